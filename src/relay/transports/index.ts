/** Builds the transports named in TRANSPORT. */
import type { Logger } from "../../shared/logger.js";
import type { RelayConfig } from "../config.js";
import { LocalRelayTransport } from "./local-relay.js";
import { StaticTransport } from "./static.js";
import type { Transport } from "./transport.js";

export function createTransports(config: RelayConfig, logger: Logger): Transport[] {
  return config.transports.map((name) => {
    switch (name) {
      case "local-relay":
        return new LocalRelayTransport({ dir: config.registryDir, rescanIntervalMs: config.discoveryIntervalMs, logger });
      case "static":
        return new StaticTransport({ file: config.staticInstancesFile!, logger });
    }
  });
}

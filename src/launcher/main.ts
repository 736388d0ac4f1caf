#!/usr/bin/env node
/**
 * `opencode-connected`: use it instead of `opencode`. Wiring only: configuration, the log file, and the
 * subcommand. See HELP.
 */
import { createWriteStream, mkdirSync } from "node:fs";
import path from "node:path";
import { ConfigError } from "../shared/env.js";
import { createLogger } from "../shared/logger.js";
import { PACKAGE_VERSION } from "../shared/package-info.js";
import { cleanupCommand } from "./commands/cleanup.js";
import { doctorCommand } from "./commands/doctor.js";
import { relaySetupCommand } from "./commands/relay-setup.js";
import { sessionsCommand } from "./commands/sessions.js";
import { statusCommand } from "./commands/status.js";
import { loadLauncherConfig, type LauncherConfig } from "./config.js";
import { runLauncher } from "./run.js";

const HELP = `opencode-connected ${PACKAGE_VERSION}: OpenCode, reachable from your relay.

Usage:
  opencode-connected [--serve] [-- OPENCODE_ARGS...]   start OpenCode (the TUI, or with --serve the
                                                       headless server) and keep it registered on the relay
  opencode-connected status     this machine's instances, tunnel state, relay registrations, last log lines
  opencode-connected sessions   recent sessions of the instances running here
  opencode-connected cleanup    remove what dead launchers left: tunnels, registrations, sockets
  opencode-connected doctor     check ssh, the relay, its registry and opencode; say what to fix
  opencode-connected relay-setup [--user NAME] [--registry DIR] [--key FILE|KEY] [--script PATH]
                                [--apply FILE [--force]]
                                on the relay: print (with --apply, write) a hardened setup, where a tunnel
                                key can only tunnel: sshd Match block, authorized_keys line, registry,
                                forced-command script. relay-setup --help says more

Environment:
  RELAY_SSH_CMD        how to reach the relay, e.g. "ssh user@relay" or
                       "gcloud compute ssh relay --zone=europe-west1-b --". Unset: local mode
                       (registration written to RELAY_REGISTRY_DIR on this machine).
  RELAY_REGISTRY_DIR   registry directory (on the relay, or locally): /tmp/opencode-relay
  INSTANCE_NAME        name shown to the chat model: $(hostname)-$(basename $PWD)
  RELAY_FORWARD        socket (default: a Unix socket in the registry, only the relay user can connect)
                       or tcp (a loopback port on the relay)
  OPENCODE_SERVER_PASSWORD  kept if set; otherwise a random one per run
  OPENCODE_CONFIG      passed through to opencode, like every other variable
  OPENCODE_BIN         opencode executable: opencode
  LOG_FILE             launcher log (the terminal belongs to the TUI): $XDG_STATE_HOME/opencode-relay/opencode-connected.log
  LOG_LEVEL            debug | info | warn | error
`;

function say(line: string): void {
  process.stderr.write(`${line}\n`);
}

async function main(): Promise<number> {
  let config: LauncherConfig;
  try {
    config = loadLauncherConfig(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      say(`opencode-connected: ${err.message}`);
      return 2;
    }
    throw err;
  }
  const out = (s: string) => process.stdout.write(`${s}\n`);
  switch (config.subcommand) {
    case "help":
      process.stdout.write(HELP);
      return 0;
    case "status":
      return statusCommand(config, out);
    case "cleanup":
      return cleanupCommand(config, out);
    case "sessions":
      return sessionsCommand(config, out);
    case "doctor":
      return doctorCommand(config, out);
    case "relay-setup":
      return relaySetupCommand(config, out, config.subcommandArgs, say);
    case "run": {
      mkdirSync(path.dirname(config.logFile), { recursive: true, mode: 0o700 });
      const stream = createWriteStream(config.logFile, { flags: "a", mode: 0o600 });
      const logger = createLogger({ level: config.logLevel, stream }).child({ pid: process.pid });
      try {
        return await runLauncher(config, { say, logger, env: process.env });
      } finally {
        await new Promise<void>((resolve) => stream.end(() => resolve()));
      }
    }
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    say(`opencode-connected: fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(1);
  },
);

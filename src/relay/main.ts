#!/usr/bin/env node
/**
 * `opencode-mcp`: the relay's MCP server on stdio. Wiring only: configuration, logging to stderr,
 * the instance directory, the MCP server, and a clean exit. Nothing but MCP ever reaches stdout.
 */
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { ConfigError } from "../shared/env.js";
import { createLogger } from "../shared/logger.js";
import { PACKAGE_VERSION } from "../shared/package-info.js";
import { createAuditLog, type AuditLog } from "./audit.js";
import { loadRelayConfig, type RelayConfig } from "./config.js";
import { InstanceDirectory } from "./instances/instance-directory.js";
import { RegistryDirError } from "./registry/registry-dir.js";
import { createServer } from "./server.js";
import { createTransports } from "./transports/index.js";

const HELP = `opencode-mcp ${PACKAGE_VERSION}: MCP server (stdio) that lets a chat model list, prompt and read the
OpenCode instances tunnelled to this relay. Started by an MCP client; configured by environment:
  RELAY_REGISTRY_DIR, TRANSPORT, STATIC_INSTANCES_FILE, DISCOVERY_INTERVAL_MS, HEALTH_CHECK_TIMEOUT_MS,
  HEALTH_INTERVAL_MS, HEALTH_CONCURRENCY, PRUNE_AFTER_MS, SEND_TIMEOUT_MS, LOG_LEVEL, LOG_FORMAT,
  AUDIT_LOG, AUDIT_INCLUDE_TEXT
See .env.example for defaults and meanings.
`;

/** Bound on shutdown: a stuck watcher or socket must not keep the process alive. */
const SHUTDOWN_GRACE_MS = 5_000;

async function main(): Promise<void> {
  const arg = process.argv[2];
  if (arg === "--help" || arg === "-h") {
    process.stderr.write(HELP);
    return;
  }
  if (arg === "--version" || arg === "-v") {
    process.stderr.write(`${PACKAGE_VERSION}\n`);
    return;
  }
  if (arg !== undefined) {
    process.stderr.write(`opencode-mcp: unknown argument "${arg}"; see opencode-mcp --help\n`);
    process.exit(2);
  }

  let config: RelayConfig;
  try {
    config = loadRelayConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`opencode-mcp: bad configuration: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger({ level: config.logLevel, format: config.logFormat, stream: process.stderr });
  const directory = new InstanceDirectory({
    transports: createTransports(config, logger),
    health: {
      timeoutMs: config.healthTimeoutMs,
      intervalMs: config.healthIntervalMs,
      concurrency: config.healthConcurrency,
      pruneAfterMs: config.pruneAfterMs,
    },
    logger,
  });
  try {
    await directory.start();
  } catch (err) {
    const msg = err instanceof RegistryDirError || err instanceof Error ? err.message : String(err);
    process.stderr.write(`opencode-mcp: cannot start: ${msg}\n`);
    await directory.close();
    process.exit(1);
  }

  let audit: AuditLog;
  try {
    audit = createAuditLog({ target: config.audit, includeText: config.auditIncludeText, logger });
  } catch (err) {
    process.stderr.write(`opencode-mcp: cannot start: ${(err as Error).message}\n`);
    await directory.close();
    process.exit(1);
  }
  const { server, cleanup } = createServer({ directory, sendTimeoutMs: config.sendTimeoutMs, logger, audit });
  const transport = new StdioServerTransport();

  let closing = false;
  const shutdown = async (why: string, code = 0) => {
    if (closing) return;
    closing = true;
    logger.info("shutting down", { why });
    const force = setTimeout(() => {
      logger.warn("shutdown took too long; exiting");
      process.exit(code || 1);
    }, SHUTDOWN_GRACE_MS);
    force.unref();
    await Promise.allSettled([cleanup(), directory.close()]);
    audit.close();
    process.exit(code);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  // The MCP client closing our stdin is its way of saying goodbye.
  process.stdin.on("end", () => void shutdown("stdin closed"));
  transport.onclose = () => void shutdown("transport closed");

  await server.connect(transport);
  logger.info("opencode-mcp ready", { version: PACKAGE_VERSION, transports: config.transports.join(","), registry: config.registryDir, instances: directory.endpoints().length });
}

main().catch((err: unknown) => {
  process.stderr.write(`opencode-mcp: fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});

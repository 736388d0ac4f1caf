#!/usr/bin/env node
/**
 * `opencode-mcp`: the relay's MCP server, on stdio (default) or Streamable HTTP (`--http`). Wiring only:
 * configuration, logging to stderr, the instance directory, the MCP server(s), graceful shutdown.
 * Nothing but MCP ever reaches stdout (and in HTTP mode, nothing at all).
 */
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { ConfigError } from "../shared/env.js";
import { createLogger, type Logger } from "../shared/logger.js";
import { PACKAGE_VERSION } from "../shared/package-info.js";
import { createAuditLog, type AuditLog } from "./audit.js";
import { CallTracker } from "./call-tracker.js";
import { loadRelayConfig, type RelayConfig } from "./config.js";
import { RelayHttpServer } from "./http/http-server.js";
import { InstanceDirectory } from "./instances/instance-directory.js";
import { createServer } from "./server.js";
import { createShutdown } from "./shutdown.js";
import type { ToolDeps } from "./tools/tool-result.js";
import { createTransports } from "./transports/index.js";

const HELP = `opencode-mcp ${PACKAGE_VERSION}: MCP server that lets a chat model list, prompt and read the OpenCode
instances tunnelled to this relay.
  opencode-mcp          MCP on stdin/stdout, started by an MCP client
  opencode-mcp --http   MCP over Streamable HTTP on MCP_HTTP_HOST:MCP_HTTP_PORT, path MCP_PATH
                        (also MCP_TRANSPORT=http); GET /healthz and /readyz need no token
Configured by environment:
  RELAY_REGISTRY_DIR, TRANSPORT, STATIC_INSTANCES_FILE, DISCOVERY_INTERVAL_MS, HEALTH_CHECK_TIMEOUT_MS,
  HEALTH_INTERVAL_MS, HEALTH_CONCURRENCY, PRUNE_AFTER_MS, SEND_TIMEOUT_MS, SHUTDOWN_TIMEOUT_MS,
  LOG_LEVEL, LOG_FORMAT, AUDIT_LOG, AUDIT_INCLUDE_TEXT,
  HTTP: MCP_TRANSPORT, MCP_HTTP_HOST, MCP_HTTP_PORT, MCP_PATH, MCP_BEARER_TOKEN, ALLOWED_HOSTS,
  ALLOWED_ORIGINS, MCP_MAX_BODY_BYTES, MCP_SESSION_IDLE_MS
See .env.example for defaults and meanings.
`;

function cannotStart(err: unknown): never {
  process.stderr.write(`opencode-mcp: cannot start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  let http = false;
  for (const arg of process.argv.slice(2)) {
    if (arg === "--help" || arg === "-h") {
      process.stderr.write(HELP);
      return;
    }
    if (arg === "--version" || arg === "-v") {
      process.stderr.write(`${PACKAGE_VERSION}\n`);
      return;
    }
    if (arg !== "--http") {
      process.stderr.write(`opencode-mcp: unknown argument "${arg}"; see opencode-mcp --help\n`);
      process.exit(2);
    }
    http = true;
  }

  let config: RelayConfig;
  try {
    config = loadRelayConfig(process.env, { http });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`opencode-mcp: bad configuration: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger({ level: config.logLevel, format: config.logFormat, stream: process.stderr });
  let audit: AuditLog;
  try {
    audit = createAuditLog({ target: config.audit, includeText: config.auditIncludeText, logger });
  } catch (err) {
    cannotStart(err);
  }
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
  // Aborted at shutdown: running sends stop waiting and answer with the text so far.
  const stopping = new AbortController();
  const tracker = new CallTracker();
  const deps: ToolDeps = { directory, sendTimeoutMs: config.sendTimeoutMs, logger, audit, shutdown: stopping.signal };
  const closeResources = async () => {
    await directory.close();
    audit.close();
  };
  const startDirectory = async (undo: () => Promise<void> = async () => {}) => {
    try {
      await directory.start();
    } catch (err) {
      await Promise.allSettled([undo(), closeResources()]);
      cannotStart(err);
    }
  };
  const ready = (fields: Record<string, unknown>) =>
    logger.info("opencode-mcp ready", {
      version: PACKAGE_VERSION,
      mode: config.mode,
      transports: config.transports.join(","),
      registry: config.registryDir,
      instances: directory.endpoints().length,
      ...fields,
    });
  const shutdownOptions = { tracker, controller: stopping, timeoutMs: config.shutdownTimeoutMs, closeResources, logger, exit: (code: number) => process.exit(code) };

  if (config.mode === "http") {
    const server = new RelayHttpServer({ config: config.http, deps, tracker, logger });
    // Listen first: /healthz answers while the registry is loaded, /readyz says 503 until it is.
    try {
      await server.listen();
    } catch (err) {
      await closeResources();
      cannotStart(err);
    }
    const shutdown = createShutdown({ ...shutdownOptions, stopAccepting: () => server.stopAccepting(), closeTransports: () => server.close() });
    onSignals(shutdown, logger);
    await startDirectory(() => server.close());
    const labels = config.http.tokens.map((t) => t.label);
    ready({ url: server.url, auth: labels.length ? `bearer:${labels.join(",")}` : "none" });
    return;
  }

  await startDirectory();
  const { server, cleanup } = createServer(deps);
  const transport = tracker.wrap(new StdioServerTransport());
  // stdin keeps being read while calls drain, so the answers to their pings still arrive; new
  // requests are refused by the tracker.
  const shutdown = createShutdown({ ...shutdownOptions, stopAccepting: () => {}, closeTransports: cleanup });
  onSignals(shutdown, logger);
  // The MCP client closing our stdin is its way of saying goodbye.
  process.stdin.on("end", () => void shutdown("stdin closed"));
  transport.onclose = () => void shutdown("transport closed");
  await server.connect(transport);
  ready({});
}

function onSignals(shutdown: (why: string) => Promise<void>, logger: Logger): void {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      // A second signal (npm and the terminal both forward Ctrl-C) changes nothing: the shutdown is bounded.
      logger.debug("signal", { signal });
      void shutdown(signal);
    });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`opencode-mcp: fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});

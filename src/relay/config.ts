/**
 * The relay server's configuration, parsed once from the environment. Variable names and defaults are
 * those of the tool we replace, so an existing gateway configuration keeps working unchanged.
 */
import path from "node:path";
import { z } from "zod";
import { LOG_LEVELS } from "../shared/logger.js";
import { ConfigError, intFromEnv, parseEnv } from "../shared/env.js";
import { parseBearerTokens, type BearerToken } from "./http/auth.js";
import { isLoopbackHost } from "./http/guards.js";

export const TRANSPORT_NAMES = ["local-relay", "static"] as const;
export type TransportName = (typeof TRANSPORT_NAMES)[number];

/** Paths the HTTP server answers without a token; the MCP endpoint cannot be one of them. */
const RESERVED_PATHS = ["/healthz", "/readyz"];

const RelayEnvSchema = z.object({
  RELAY_REGISTRY_DIR: z
    .string()
    .refine((p) => path.isAbsolute(p), "must be an absolute path")
    .default("/tmp/opencode-relay"),
  DISCOVERY_INTERVAL_MS: intFromEnv(30_000, 100),
  HEALTH_CHECK_TIMEOUT_MS: intFromEnv(3_000, 50),
  HEALTH_INTERVAL_MS: intFromEnv(10_000, 100),
  HEALTH_CONCURRENCY: intFromEnv(16, 1),
  PRUNE_AFTER_MS: intFromEnv(60_000, 0),
  TRANSPORT: z
    .string()
    .default("local-relay")
    .transform((s) => [...new Set(s.split(",").map((t) => t.trim()).filter(Boolean))])
    .pipe(z.array(z.enum(TRANSPORT_NAMES, { errorMap: () => ({ message: `each transport must be one of ${TRANSPORT_NAMES.join(", ")} (comma-separated)` }) })).min(1)),
  STATIC_INSTANCES_FILE: z.string().optional(),
  SEND_TIMEOUT_MS: intFromEnv(300_000, 100),
  LOG_LEVEL: z.enum(LOG_LEVELS).default("info"),
  LOG_FORMAT: z.enum(["text", "json"]).default("text"),
  AUDIT_LOG: z.string().default("stderr"),
  AUDIT_INCLUDE_TEXT: z.enum(["0", "1", "true", "false"]).default("0"),
  SHUTDOWN_TIMEOUT_MS: intFromEnv(10_000, 0),
  MCP_TRANSPORT: z.enum(["stdio", "http"]).default("stdio"),
  MCP_HTTP_HOST: z
    .string()
    .trim()
    .transform((h) => h.replace(/^\[(.*)\]$/, "$1"))
    .pipe(z.string().min(1, "must be an address or host name"))
    .default("127.0.0.1"),
  MCP_HTTP_PORT: intFromEnv(8808, 1).refine((n) => n <= 65_535, "must be at most 65535"),
  MCP_PATH: z
    .string()
    .regex(/^\/[^\s?#]*$/, "must start with / and contain no spaces, ? or #")
    .refine((p) => !RESERVED_PATHS.includes(p), `must not be ${RESERVED_PATHS.join(" or ")}`)
    .default("/mcp"),
  // Never refined here: a schema error quotes the value, and this one is a secret (see parseBearerTokens).
  MCP_BEARER_TOKEN: z.string().optional(),
  ALLOWED_HOSTS: z.string().transform(list).optional(),
  ALLOWED_ORIGINS: z
    .string()
    .transform(list)
    .pipe(z.array(z.string().refine(isOrigin, "each origin must look like https://host or http://host:port (scheme, host, optional port; no path)")))
    .optional(),
  MCP_MAX_BODY_BYTES: intFromEnv(1_048_576, 1),
  MCP_SESSION_IDLE_MS: intFromEnv(1_800_000, 1_000),
});

function list(s: string): string[] {
  return [...new Set(s.split(",").map((v) => v.trim().toLowerCase()).filter(Boolean))];
}

function isOrigin(o: string): boolean {
  try {
    const u = new URL(o);
    return (u.protocol === "http:" || u.protocol === "https:") && u.origin === o;
  } catch {
    return false;
  }
}

/** `host:port` as a client writes it in a Host header (IPv6 in brackets). */
export function hostPort(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

export interface HttpConfig {
  host: string;
  port: number;
  /** The MCP endpoint, e.g. /mcp. */
  path: string;
  /** Empty: no authentication (allowed on a loopback bind only). */
  tokens: BearerToken[];
  /** Host header values accepted (lower case); undefined: any (a non-loopback bind without ALLOWED_HOSTS). */
  allowedHosts: string[] | undefined;
  /** Origin header values accepted; a request without Origin is always accepted. */
  allowedOrigins: string[];
  maxBodyBytes: number;
  sessionIdleMs: number;
}

export interface RelayConfig {
  registryDir: string;
  discoveryIntervalMs: number;
  healthTimeoutMs: number;
  healthIntervalMs: number;
  healthConcurrency: number;
  pruneAfterMs: number;
  transports: TransportName[];
  staticInstancesFile?: string;
  sendTimeoutMs: number;
  logLevel: (typeof LOG_LEVELS)[number];
  logFormat: "text" | "json";
  audit: "off" | "stderr" | { path: string };
  auditIncludeText: boolean;
  /** stdio (default), or Streamable HTTP (`--http` or MCP_TRANSPORT=http). */
  mode: "stdio" | "http";
  /** How long in-flight calls get to end after SIGTERM/SIGINT. */
  shutdownTimeoutMs: number;
  /** Parsed (and checked) in both modes; used in HTTP mode. */
  http: HttpConfig;
}

/** `opts.http`: the `--http` flag, which wins over MCP_TRANSPORT. */
export function loadRelayConfig(env: NodeJS.ProcessEnv = process.env, opts: { http?: boolean } = {}): RelayConfig {
  const e = parseEnv(RelayEnvSchema, env);
  const mode = opts.http || e.MCP_TRANSPORT === "http" ? "http" : "stdio";
  const tokens = e.MCP_BEARER_TOKEN?.trim() ? parseBearerTokens(e.MCP_BEARER_TOKEN) : [];
  const loopback = isLoopbackHost(e.MCP_HTTP_HOST);
  if (mode === "http" && !loopback && tokens.length === 0) {
    throw new ConfigError(
      `MCP_HTTP_HOST="${e.MCP_HTTP_HOST}": refusing to serve a non-loopback address without MCP_BEARER_TOKEN; set a token, or bind 127.0.0.1 behind a reverse proxy`,
    );
  }
  const port = e.MCP_HTTP_PORT;
  const defaultHosts = loopback
    ? [...new Set([hostPort("127.0.0.1", port), hostPort("localhost", port), hostPort("::1", port), hostPort(e.MCP_HTTP_HOST.toLowerCase(), port)])]
    : undefined;
  if (e.AUDIT_LOG !== "off" && e.AUDIT_LOG !== "stderr" && !path.isAbsolute(e.AUDIT_LOG)) {
    throw new ConfigError(`AUDIT_LOG="${e.AUDIT_LOG}": must be stderr, off, or an absolute file path`);
  }
  if (e.TRANSPORT.includes("static") && !e.STATIC_INSTANCES_FILE) {
    throw new ConfigError("STATIC_INSTANCES_FILE: must be set when TRANSPORT includes static (a JSON file of instance URLs)");
  }
  return {
    registryDir: e.RELAY_REGISTRY_DIR,
    discoveryIntervalMs: e.DISCOVERY_INTERVAL_MS,
    healthTimeoutMs: e.HEALTH_CHECK_TIMEOUT_MS,
    healthIntervalMs: e.HEALTH_INTERVAL_MS,
    healthConcurrency: e.HEALTH_CONCURRENCY,
    pruneAfterMs: e.PRUNE_AFTER_MS,
    transports: e.TRANSPORT,
    ...(e.STATIC_INSTANCES_FILE ? { staticInstancesFile: path.resolve(e.STATIC_INSTANCES_FILE) } : {}),
    sendTimeoutMs: e.SEND_TIMEOUT_MS,
    logLevel: e.LOG_LEVEL,
    logFormat: e.LOG_FORMAT,
    audit: e.AUDIT_LOG === "off" || e.AUDIT_LOG === "stderr" ? e.AUDIT_LOG : { path: path.resolve(e.AUDIT_LOG) },
    auditIncludeText: e.AUDIT_INCLUDE_TEXT === "1" || e.AUDIT_INCLUDE_TEXT === "true",
    mode,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    http: {
      host: e.MCP_HTTP_HOST,
      port,
      path: e.MCP_PATH,
      tokens,
      allowedHosts: e.ALLOWED_HOSTS?.length ? e.ALLOWED_HOSTS : defaultHosts,
      allowedOrigins: e.ALLOWED_ORIGINS ?? [],
      maxBodyBytes: e.MCP_MAX_BODY_BYTES,
      sessionIdleMs: e.MCP_SESSION_IDLE_MS,
    },
  };
}

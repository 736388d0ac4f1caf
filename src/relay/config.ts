/**
 * The relay server's configuration, parsed once from the environment. Variable names and defaults are
 * those of the tool we replace, so an existing gateway configuration keeps working unchanged.
 */
import path from "node:path";
import { z } from "zod";
import { LOG_LEVELS } from "../shared/logger.js";
import { ConfigError, intFromEnv, parseEnv } from "../shared/env.js";

export const TRANSPORT_NAMES = ["local-relay", "static"] as const;
export type TransportName = (typeof TRANSPORT_NAMES)[number];

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
});

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
}

export function loadRelayConfig(env: NodeJS.ProcessEnv = process.env): RelayConfig {
  const e = parseEnv(RelayEnvSchema, env);
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
  };
}

/**
 * Levelled, one-line-per-event logging to a writable stream. The relay logs to stderr (stdout is the MCP
 * wire); the launcher logs to a file (its terminal belongs to the TUI).
 */
import type { Writable } from "node:stream";

export const LOG_LEVELS = ["debug", "info", "warn", "error", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type LogFormat = "text" | "json";
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

export interface LoggerOptions {
  level?: LogLevel;
  format?: LogFormat;
  stream: Writable;
  now?: () => Date;
  bound?: LogFields;
}

function renderValue(v: unknown): string {
  if (v instanceof Error) return JSON.stringify(v.message);
  if (typeof v === "string") return /^[\w./:@+-]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

export function createLogger(opts: LoggerOptions): Logger {
  const threshold = LOG_LEVELS.indexOf(opts.level ?? "info");
  const now = opts.now ?? (() => new Date());
  const bound = opts.bound ?? {};
  const write = (level: Exclude<LogLevel, "silent">, msg: string, fields?: LogFields) => {
    if (LOG_LEVELS.indexOf(level) < threshold) return;
    const all = { ...bound, ...fields };
    let line: string;
    if (opts.format === "json") {
      const plain = Object.fromEntries(Object.entries(all).map(([k, v]) => [k, v instanceof Error ? v.message : v]));
      line = JSON.stringify({ time: now().toISOString(), level, msg, ...plain });
    } else {
      const rest = Object.entries(all).map(([k, v]) => `${k}=${renderValue(v)}`).join(" ");
      line = `${now().toISOString()} ${level.toUpperCase().padEnd(5)} ${msg}${rest ? ` ${rest}` : ""}`;
    }
    opts.stream.write(`${line}\n`);
  };
  return {
    debug: (m, f) => write("debug", m, f),
    info: (m, f) => write("info", m, f),
    warn: (m, f) => write("warn", m, f),
    error: (m, f) => write("error", m, f),
    child: (fields) => createLogger({ ...opts, bound: { ...bound, ...fields } }),
  };
}

/** A logger that drops everything: the default for library objects constructed without one. */
export const silentLogger: Logger = createLogger({ level: "silent", stream: { write: () => true } as unknown as Writable });

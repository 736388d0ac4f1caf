/**
 * The audit trail: every prompt sent to (and every abort of) a coding agent that has a shell on
 * someone's machine leaves one JSON line. The message itself is recorded by length and SHA-256 only,
 * unless AUDIT_INCLUDE_TEXT=1. A line that cannot be written is reported on stderr every time: an
 * audit log that fails quietly is worse than none.
 */
import { createHash } from "node:crypto";
import { closeSync, openSync, writeSync } from "node:fs";
import type { Writable } from "node:stream";
import type { Logger } from "../shared/logger.js";

export interface AuditRecord {
  /** "stdio", or the HTTP token's label (never the token). */
  caller: string;
  action: "send" | "abort" | "abort+send";
  /** As the caller wrote it, and as resolved (when it was). */
  instanceQuery: string;
  instance?: string;
  session?: string;
  message?: string;
  /** state of the turn (done, error, waiting, …) or why nothing was sent. */
  outcome: string;
  durationMs: number;
}

export interface AuditLog {
  record(entry: AuditRecord): void;
  close(): void;
}

export type AuditTarget = "off" | "stderr" | { path: string };

export class AuditError extends Error {
  override name = "AuditError";
}

export function createAuditLog(opts: { target: AuditTarget; includeText: boolean; logger: Logger; stderr?: Writable; now?: () => Date }): AuditLog {
  const now = opts.now ?? (() => new Date());
  if (opts.target === "off") return { record: () => {}, close: () => {} };
  let fd: number | undefined;
  if (typeof opts.target === "object") {
    try {
      fd = openSync(opts.target.path, "a", 0o600);
    } catch (err) {
      throw new AuditError(`AUDIT_LOG=${opts.target.path}: cannot open for appending (${(err as NodeJS.ErrnoException).code ?? err}); fix the path or set AUDIT_LOG=stderr or off`, { cause: err });
    }
  }
  const stderr = opts.stderr ?? process.stderr;
  return {
    record(entry) {
      const { message, ...rest } = entry;
      const line = JSON.stringify({
        time: now().toISOString(),
        audit: true,
        ...rest,
        ...(message !== undefined
          ? {
              messageLength: message.length,
              messageSha256: createHash("sha256").update(message).digest("hex"),
              ...(opts.includeText ? { messageText: message } : {}),
            }
          : {}),
      });
      try {
        if (fd !== undefined) writeSync(fd, `${line}\n`);
        else stderr.write(`${line}\n`);
      } catch (err) {
        opts.logger.error("AUDIT LOG WRITE FAILED: this call is not in the audit log", { err, entry: line });
      }
    },
    close() {
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
    },
  };
}

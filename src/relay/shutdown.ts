/**
 * Graceful shutdown, the same in both modes: stop taking new work, tell running calls (their waits end
 * at once with "the relay is shutting down" and the text so far), let them answer within a bound, then
 * close transports, then the directory and the audit log, and exit 0. Past a bound: log, exit 1.
 */
import type { Logger } from "../shared/logger.js";
import type { CallTracker } from "./call-tracker.js";

/** Bound on closing what is left once the calls have ended: a stuck watcher or socket must not hang us. */
export const CLOSE_TIMEOUT_MS = 5_000;

export interface ShutdownOptions {
  tracker: CallTracker;
  /** Its signal is the tools' `deps.shutdown`. */
  controller: AbortController;
  /** How long in-flight calls get (SHUTDOWN_TIMEOUT_MS). */
  timeoutMs: number;
  closeTimeoutMs?: number;
  /** Stop taking new work (close the HTTP listener). New requests on open connections are refused by the tracker. */
  stopAccepting(): void;
  /** Once the calls have answered: MCP transports and their streams. */
  closeTransports(): Promise<void>;
  /** Last: the directory (watchers, sockets) and the audit log. */
  closeResources(): Promise<void>;
  logger: Logger;
  exit(code: number): void;
}

/** Returns `shutdown(why)`; calls after the first are ignored (they get the first one's promise). */
export function createShutdown(opts: ShutdownOptions): (why: string) => Promise<void> {
  let running: Promise<void> | undefined;
  const run = async (why: string): Promise<void> => {
    const { logger, tracker } = opts;
    logger.info("shutting down", { why, inFlight: tracker.inFlight });
    opts.stopAccepting();
    opts.controller.abort();
    const drained = await tracker.drain(opts.timeoutMs);
    if (!drained) {
      logger.error("calls still running after SHUTDOWN_TIMEOUT_MS; exiting without them", { timeoutMs: opts.timeoutMs, inFlight: tracker.inFlight });
      opts.exit(1);
      return;
    }
    const closeTimeoutMs = opts.closeTimeoutMs ?? CLOSE_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    const closed = await Promise.race([
      (async () => {
        await opts.closeTransports().catch((err: unknown) => logger.warn("closing MCP transports failed", { err }));
        await opts.closeResources().catch((err: unknown) => logger.warn("closing the directory or audit log failed", { err }));
        return true;
      })(),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), closeTimeoutMs))),
    ]);
    clearTimeout(timer);
    if (!closed) {
      logger.error("closing transports, watchers and sockets took too long; exiting", { closeTimeoutMs });
      opts.exit(1);
      return;
    }
    logger.info("shut down cleanly", { why });
    opts.exit(0);
  };
  return (why) => (running ??= run(why));
}

/**
 * The one retry helper: capped exponential backoff with jitter and an injectable sleep. The tunnel, the
 * event stream and health probes all use it, so backoff behaves the same everywhere and tests can run it
 * on a fake clock.
 */

export interface BackoffPolicy {
  /** Delay before the first retry. */
  initialMs: number;
  /** Upper bound on any delay. */
  maxMs: number;
  /** Multiplier between consecutive delays (2 = doubling). */
  factor?: number;
  /** Relative jitter: 0.2 spreads each delay uniformly over ±20%. */
  jitter?: number;
}

/** Delay before retry number `attempt` (0-based). `random` is injectable for deterministic tests. */
export function backoffDelay(policy: BackoffPolicy, attempt: number, random: () => number = Math.random): number {
  const base = Math.min(policy.maxMs, policy.initialMs * (policy.factor ?? 2) ** attempt);
  const spread = base * (policy.jitter ?? 0);
  return Math.max(0, Math.min(policy.maxMs * (1 + (policy.jitter ?? 0)), base - spread + random() * 2 * spread));
}

export type Sleep = (ms: number, signal?: AbortSignal) => Promise<void>;

/** setTimeout as a promise that rejects with the signal's reason when aborted. */
export const sleep: Sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });

export interface RetryOptions extends BackoffPolicy {
  /** Give up after this many attempts in all (Infinity: until aborted). */
  attempts: number;
  signal?: AbortSignal;
  sleep?: Sleep;
  random?: () => number;
  /** Errors for which retrying cannot help; they are thrown at once. */
  isFatal?: (err: unknown) => boolean;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

/** Runs `fn` until it resolves, a fatal error, the attempt limit, or the signal aborts. */
export async function retry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions): Promise<T> {
  const wait = opts.sleep ?? sleep;
  for (let attempt = 0; ; attempt++) {
    opts.signal?.throwIfAborted();
    try {
      return await fn(attempt);
    } catch (err) {
      if (opts.signal?.aborted || opts.isFatal?.(err) || attempt + 1 >= opts.attempts) throw err;
      const delay = backoffDelay(opts, attempt, opts.random);
      opts.onRetry?.(err, attempt, delay);
      await wait(delay, opts.signal);
    }
  }
}

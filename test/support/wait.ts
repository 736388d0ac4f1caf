/**
 * Waiting on conditions, never on the clock: every wait has a deadline and, when it fails, says what
 * it was waiting for and what it last saw.
 */
export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
  what: string;
}

export async function waitFor<T>(check: () => T | undefined | false | null | Promise<T | undefined | false | null>, opts: WaitOptions): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const why = lastError ? ` (last error: ${(lastError as Error).message ?? lastError})` : "";
      throw new Error(`timed out after ${opts.timeoutMs ?? 10_000} ms waiting for ${opts.what}${why}`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 20));
  }
}

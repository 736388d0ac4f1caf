/**
 * Background health of every instance: probes `GET /global/health` through each instance's tunnel,
 * with bounded concurrency and a timeout, and keeps per-instance state that tool calls read without
 * waiting. Tool calls feed it too: a refused `send` marks an instance offline at once.
 *
 * Pruning is deliberately slow to judge. A refused connection means the tunnel is gone; only a run of
 * refusals lasting PRUNE_AFTER_MS, with no heartbeat since, removes a registration. A timeout means a
 * slow or half-open link: the instance is shown offline ("not answering") but never pruned for it, so
 * a live laptop on a bad network does not vanish.
 */
import { silentLogger, type Logger } from "../../shared/logger.js";
import { probeHealth, type FailureKind, type HealthResult, type OpencodeClient } from "../opencode/client.js";
import type { InstanceEndpoint } from "../transports/transport.js";

export type InstanceStatus = "unknown" | "online" | "offline";

export interface InstanceHealth {
  status: InstanceStatus;
  /** When `status` last changed. */
  since: Date;
  lastSeen?: Date;
  checkedAt?: Date;
  /** Consecutive failed probes or calls. */
  failures: number;
  /** Start of the current unbroken run of refusals, if the run is refusals only. */
  refusedSince?: Date;
  lastFailure?: { kind: FailureKind; message: string };
  version?: string;
  busy?: boolean;
  latestSession?: { id: string; title: string; updated: number };
}

export interface HealthMonitorOptions {
  timeoutMs: number;
  intervalMs: number;
  concurrency: number;
  pruneAfterMs: number;
  /** Refusals needed (besides the time) before pruning. */
  pruneAfterFailures?: number;
  endpoints: () => InstanceEndpoint[];
  clientFor: (key: string) => OpencodeClient | undefined;
  prune: (key: string, reason: string) => Promise<boolean>;
  now?: () => Date;
  logger?: Logger;
  /** Also fetch busy/idle and the latest session after a good probe (off in pure health benchmarks). */
  details?: boolean;
}

/** Timeouts take two strikes before "offline": one slow answer is not an outage. */
const TIMEOUTS_BEFORE_OFFLINE = 2;

export class HealthMonitor {
  readonly #opts: HealthMonitorOptions;
  readonly #log: Logger;
  readonly #now: () => Date;
  readonly #state = new Map<string, InstanceHealth>();
  readonly #inflight = new Map<string, Promise<void>>();
  /** Probe slots: HEALTH_CONCURRENCY bounds every probe, swept or triggered. */
  #free: number;
  readonly #queue: Array<() => void> = [];
  #timer: NodeJS.Timeout | undefined;
  #sweeping: Promise<void> | undefined;
  #closed = false;

  constructor(opts: HealthMonitorOptions) {
    this.#opts = opts;
    this.#log = (opts.logger ?? silentLogger).child({ component: "health" });
    this.#now = opts.now ?? (() => new Date());
    this.#free = opts.concurrency;
  }

  async #withSlot<T>(urgent: boolean, fn: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free -= 1;
    else await new Promise<void>((resolve) => (urgent ? this.#queue.unshift(resolve) : this.#queue.push(resolve)));
    try {
      return await fn();
    } finally {
      const next = this.#queue.shift();
      if (next) next();
      else this.#free += 1;
    }
  }

  start(): void {
    this.#timer = setInterval(() => void this.sweep(), this.#opts.intervalMs);
    this.#timer.unref();
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    await Promise.allSettled([...this.#inflight.values(), this.#sweeping]);
  }

  get(key: string): InstanceHealth {
    let s = this.#state.get(key);
    if (!s) {
      s = { status: "unknown", since: this.#now(), failures: 0 };
      this.#state.set(key, s);
    }
    return s;
  }

  forget(key: string): void {
    this.#state.delete(key);
  }

  /** Probes every known instance, at most `concurrency` at once; overlapping sweeps are skipped. */
  sweep(): Promise<void> {
    if (this.#sweeping) return this.#sweeping;
    const keys = this.#opts.endpoints().map((e) => e.key);
    this.#sweeping = Promise.all(keys.map((k) => this.probe(k, false))).then(
      () => undefined,
      () => undefined,
    );
    void this.#sweeping.finally(() => (this.#sweeping = undefined));
    return this.#sweeping;
  }

  /**
   * Probes one instance; joins a probe of it already under way. `urgent` probes (a registration just
   * appeared or changed, a tool asks) go ahead of a sweep's queue, so a new instance is checked at once
   * even while a sweep waits on half-open links.
   */
  probe(key: string, urgent = true): Promise<void> {
    const running = this.#inflight.get(key);
    if (running) return running;
    const p = this.#withSlot(urgent, () => this.#probe(key)).finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, p);
    return p;
  }

  async #probe(key: string): Promise<void> {
    const client = this.#opts.clientFor(key);
    if (!client || this.#closed) return;
    const result: HealthResult = await probeHealth(client, this.#opts.timeoutMs);
    if (!this.#state.has(key) && !this.#opts.endpoints().some((e) => e.key === key)) return; // removed meanwhile
    if (result.ok) {
      this.recordSuccess(key, result.version);
      if (this.#opts.details !== false) await this.#refreshDetails(key, client);
      return;
    }
    this.recordFailure(key, result.kind, result.message);
    await this.#maybePrune(key);
  }

  async #refreshDetails(key: string, client: OpencodeClient): Promise<void> {
    const signal = AbortSignal.timeout(this.#opts.timeoutMs);
    try {
      const [sessions, status] = await Promise.all([
        client.session.list({ roots: true, limit: 1 }, { signal }),
        client.session.status(undefined, { signal }),
      ]);
      const s = this.get(key);
      const latest = sessions.data?.[0];
      s.latestSession = latest ? { id: latest.id, title: latest.title, updated: latest.time.updated } : undefined;
      s.busy = Object.values(status.data ?? {}).some((st) => st.type !== "idle");
    } catch (err) {
      this.#log.debug("could not refresh session details", { key, err });
    }
  }

  recordSuccess(key: string, version?: string): void {
    const s = this.get(key);
    const now = this.#now();
    if (s.status !== "online") {
      if (s.status === "offline") this.#log.info("instance back online", { key });
      s.status = "online";
      s.since = now;
    }
    s.lastSeen = now;
    s.checkedAt = now;
    s.failures = 0;
    s.refusedSince = undefined;
    s.lastFailure = undefined;
    if (version) s.version = version;
  }

  recordFailure(key: string, kind: FailureKind, message: string): void {
    const s = this.get(key);
    const now = this.#now();
    s.failures += 1;
    s.checkedAt = now;
    s.lastFailure = { kind, message };
    if (kind === "refused") s.refusedSince ??= now;
    else s.refusedSince = undefined;
    const offline = kind !== "timeout" || s.failures >= TIMEOUTS_BEFORE_OFFLINE;
    if (offline && s.status !== "offline") {
      this.#log.warn("instance offline", { key, reason: message });
      s.status = "offline";
      s.since = now;
      s.busy = undefined;
    }
  }

  async #maybePrune(key: string): Promise<void> {
    const s = this.get(key);
    if (!s.refusedSince || s.failures < (this.#opts.pruneAfterFailures ?? 3)) return;
    const now = this.#now().getTime();
    if (now - s.refusedSince.getTime() < this.#opts.pruneAfterMs) return;
    const endpoint = this.#opts.endpoints().find((e) => e.key === key);
    const heartbeat = endpoint?.heartbeatAt ? Date.parse(endpoint.heartbeatAt) : NaN;
    if (heartbeat > s.refusedSince.getTime()) return; // the launcher is alive and says so
    const reason = `refused for ${Math.round((now - s.refusedSince.getTime()) / 1000)} s (${s.failures} probes)`;
    try {
      if (await this.#opts.prune(key, reason)) this.forget(key);
    } catch (err) {
      this.#log.error("prune failed", { key, err });
    }
  }
}

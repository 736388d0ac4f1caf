/**
 * Every instance the relay knows, from all transports at once, with its health. Tools ask it for an
 * instance by (fuzzy) name and get an endpoint, a cached SDK client and the latest health; nothing here
 * blocks on the network.
 */
import { silentLogger, type Logger } from "../../shared/logger.js";
import { HealthMonitor, type InstanceHealth } from "../health/health-monitor.js";
import { classifyFailure, createInstanceClient, describeFailure, type OpencodeClient } from "../opencode/client.js";
import { createHttpAgents, type HttpAgents } from "../opencode/http-fetch.js";
import type { InstanceEndpoint, Transport, TransportEvent } from "../transports/transport.js";
import { listWords, matchName } from "./resolve-name.js";

export interface InstanceView {
  endpoint: InstanceEndpoint;
  health: InstanceHealth;
}

/** An instance a tool is about to call. */
export interface Instance extends InstanceView {
  client: OpencodeClient;
}

export type Resolution = { ok: true; instance: Instance } | { ok: false; message: string };

export interface InstanceDirectoryOptions {
  transports: Transport[];
  health: { timeoutMs: number; intervalMs: number; concurrency: number; pruneAfterMs: number; details?: boolean };
  logger?: Logger;
  now?: () => Date;
  createClient?: (endpoint: InstanceEndpoint) => OpencodeClient;
}

export class InstanceDirectory {
  readonly #transports: Transport[];
  readonly #log: Logger;
  readonly #now: () => Date;
  readonly #createClient: (endpoint: InstanceEndpoint) => OpencodeClient;
  readonly #clients = new Map<string, { endpoint: InstanceEndpoint; client: OpencodeClient }>();
  readonly #unsubscribe: Array<() => void> = [];
  readonly health: HealthMonitor;
  #started = false;
  /** The keep-alive pools of the clients we build (none when clients are injected). */
  readonly #agents: HttpAgents | undefined;

  constructor(opts: InstanceDirectoryOptions) {
    this.#transports = opts.transports;
    this.#log = opts.logger ?? silentLogger;
    this.#now = opts.now ?? (() => new Date());
    const agents = opts.createClient ? undefined : createHttpAgents();
    this.#agents = agents;
    this.#createClient = opts.createClient ?? ((endpoint) => createInstanceClient(endpoint, agents));
    this.health = new HealthMonitor({
      ...opts.health,
      endpoints: () => this.endpoints(),
      clientFor: (key) => this.#clientFor(key),
      prune: (key, reason) => this.#prune(key, reason),
      now: this.#now,
      logger: this.#log,
    });
  }

  /** Starts every transport, then health checks. Resolves once each transport has its initial list. */
  async start(): Promise<void> {
    for (const t of this.#transports) this.#unsubscribe.push(t.subscribe((e) => this.#onTransportEvent(e)));
    await Promise.all(this.#transports.map((t) => t.start()));
    this.#started = true;
    this.health.start();
    void this.health.sweep();
  }

  get started(): boolean {
    return this.#started;
  }

  async close(): Promise<void> {
    for (const u of this.#unsubscribe.splice(0)) u();
    await this.health.close();
    await Promise.allSettled(this.#transports.map((t) => t.close()));
    this.#clients.clear();
    // Idle keep-alive connections to instances go with us.
    this.#agents?.["http:"].destroy();
    this.#agents?.["https:"].destroy();
  }

  #onTransportEvent(e: TransportEvent): void {
    if (e.type === "remove") {
      this.#clients.delete(e.key);
      this.health.forget(e.key);
      return;
    }
    const cached = this.#clients.get(e.endpoint.key);
    const dialChanged =
      !cached ||
      cached.endpoint.baseUrl !== e.endpoint.baseUrl ||
      cached.endpoint.socketPath !== e.endpoint.socketPath ||
      JSON.stringify(cached.endpoint.auth) !== JSON.stringify(e.endpoint.auth);
    if (dialChanged) {
      this.#clients.delete(e.endpoint.key);
      // A new tunnel is a new situation: old failures say nothing about it.
      if (cached) this.health.forget(e.endpoint.key);
    } else {
      this.#clients.set(e.endpoint.key, { endpoint: e.endpoint, client: cached.client });
    }
    void this.health.probe(e.endpoint.key);
  }

  endpoints(): InstanceEndpoint[] {
    return this.#transports.flatMap((t) => t.list());
  }

  #endpoint(key: string): InstanceEndpoint | undefined {
    return this.endpoints().find((e) => e.key === key);
  }

  /** The client for an instance as registered now (a reconnected tunnel may have moved it). */
  clientFor(key: string): OpencodeClient | undefined {
    return this.#clientFor(key);
  }

  #clientFor(key: string): OpencodeClient | undefined {
    const cached = this.#clients.get(key);
    if (cached) return cached.client;
    const endpoint = this.#endpoint(key);
    if (!endpoint) return undefined;
    const client = this.#createClient(endpoint);
    this.#clients.set(key, { endpoint, client });
    return client;
  }

  async #prune(key: string, reason: string): Promise<boolean> {
    const transport = this.#transports.find((t) => key.startsWith(`${t.name}:`));
    if (!transport?.prune) return false;
    return transport.prune(key, reason);
  }

  /** Every instance with its health, by name; no network, no clients built. */
  list(): InstanceView[] {
    return this.endpoints()
      .map((endpoint) => ({ endpoint, health: this.health.get(endpoint.key) }))
      .sort((a, b) => (a.endpoint.name < b.endpoint.name ? -1 : a.endpoint.name > b.endpoint.name ? 1 : a.endpoint.transport < b.endpoint.transport ? -1 : 1));
  }

  /** Names two transports share; such instances are shown as `transport:name`. */
  clashingNames(all: InstanceEndpoint[] = this.endpoints()): Set<string> {
    const seen = new Set<string>();
    const clashes = new Set<string>();
    for (const e of all) (seen.has(e.name) ? clashes : seen).add(e.name);
    return clashes;
  }

  /** Display name: the plain name, or `transport:name` when two transports share a name. */
  displayName(endpoint: InstanceEndpoint, clashes = this.clashingNames()): string {
    return clashes.has(endpoint.name) ? endpoint.key : endpoint.name;
  }

  /** Finds one instance by fuzzy name, or explains in a sentence a chat model can act on why not. */
  resolve(query: string): Resolution {
    const all = this.list();
    if (all.length === 0) {
      return { ok: false, message: "No OpenCode instances are registered. Start one with `opencode-connected` on a machine that tunnels to this relay." };
    }
    const qualified = all.filter((i) => i.endpoint.key === query.trim());
    const match = qualified.length === 1 ? { kind: "found" as const, item: qualified[0]! } : matchName(query, all, (i) => i.endpoint.name);
    const clashes = this.clashingNames(all.map((i) => i.endpoint));
    const names = (list: InstanceView[]) => list.map((i) => `${this.displayName(i.endpoint, clashes)} (${this.describeStatus(i.health)})`);
    if (match.kind === "found") return { ok: true, instance: { ...match.item, client: this.#clientFor(match.item.endpoint.key)! } };
    if (match.kind === "ambiguous") {
      return { ok: false, message: `"${query}" matches ${listWords(names(match.candidates))}; say which.` };
    }
    return { ok: false, message: `No instance matches "${query}". Available: ${listWords(names(all))}.` };
  }

  describeStatus(h: InstanceHealth): string {
    if (h.status === "online") return h.busy ? "online, busy" : "online";
    if (h.status === "unknown") return h.lastFailure ? `not answering yet: ${h.lastFailure.message}` : "not checked yet";
    return `offline since ${h.since.toISOString()}`;
  }

  /** Feeds the outcome of a tool's call into health, so the next caller sees it at once. */
  recordCallFailure(key: string, err: unknown): void {
    const kind = classifyFailure(err);
    if (kind === "refused" || kind === "timeout") this.health.recordFailure(key, kind, describeFailure(kind, err));
  }

  /** A successful call; `busy`, when the call knows it, refreshes the cached busy/idle at once. */
  recordCallSuccess(key: string, busy?: boolean): void {
    this.health.recordSuccess(key);
    if (busy !== undefined) this.health.get(key).busy = busy;
  }
}

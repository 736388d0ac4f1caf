/**
 * The seam between "where instances come from and how to reach them" and everything else. A transport
 * discovers instances and says how to dial each; the health monitor, the tools and the opencode client
 * never know which transport an instance came from.
 */

/** How to reach one opencode instance, as a transport found it. */
export interface InstanceEndpoint {
  /** Unique across transports: `<transport>:<name>`. */
  key: string;
  name: string;
  transport: string;
  hostname?: string;
  cwd?: string;
  connectedAt?: string;
  /** ISO time of the instance's last heartbeat, when its transport knows one. */
  heartbeatAt?: string;
  /** opencode version as registered (the health probe reports the live one). */
  version?: string;
  /** Base URL of the opencode HTTP API. With `socketPath` only its path matters. */
  baseUrl: string;
  /** Dial this Unix socket instead of the URL's host. */
  socketPath?: string;
  /** HTTP Basic credentials (opencode's OPENCODE_SERVER_PASSWORD). */
  auth?: { username: string; password: string };
}

export type TransportEvent = { type: "upsert"; endpoint: InstanceEndpoint } | { type: "remove"; key: string };

export interface Transport {
  /** The name users put in TRANSPORT, e.g. `local-relay`. */
  readonly name: string;
  /** Starts discovery; resolves once the initial set of instances is known. */
  start(): Promise<void>;
  /** Stops watchers and timers. Idempotent. */
  close(): Promise<void>;
  /** The instances known now. */
  list(): InstanceEndpoint[];
  /** Calls `listener` on every change after start; returns an unsubscribe function. */
  subscribe(listener: (event: TransportEvent) => void): () => void;
  /**
   * Forget an instance the health monitor judged dead, removing whatever registered it. Transports
   * whose instances are configured by hand (static) do not implement this: they are never pruned.
   */
  prune?(key: string, reason: string): Promise<boolean>;
}

/** A tiny listener set shared by the transports. */
export class Listeners<T> {
  readonly #set = new Set<(event: T) => void>();
  add(listener: (event: T) => void): () => void {
    this.#set.add(listener);
    return () => this.#set.delete(listener);
  }
  emit(event: T): void {
    for (const l of this.#set) l(event);
  }
}

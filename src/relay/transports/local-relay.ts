/**
 * The `local-relay` transport: instances are registration files in the registry directory, reached
 * through SSH reverse tunnels that end on this host (a loopback TCP port or a Unix socket).
 *
 * The directory is watched (chokidar over inotify), so a new file is usable within milliseconds; a
 * slow periodic rescan (DISCOVERY_INTERVAL_MS) only repairs what a watcher can miss, such as the whole
 * directory being wiped and recreated.
 */
import { existsSync, promises as fs, watch as fsWatch, type FSWatcher as FSWatcherNode } from "node:fs";
import path from "node:path";
import { watch, type FSWatcher } from "chokidar";
import { silentLogger, type Logger } from "../../shared/logger.js";
import type { Registration } from "../../shared/registration.js";
import {
  ensureRegistryDir,
  nameFromFile,
  readRegistration,
  removeRegistration,
  removeSocketInDir,
  sameVersion,
  socketProblem,
  sweepDeadSockets,
  type FileVersion,
} from "../registry/registry-dir.js";
import { Listeners, type InstanceEndpoint, type Transport, type TransportEvent } from "./transport.js";

export interface LocalRelayOptions {
  dir: string;
  /** Full rescan period; the watcher does the real work. */
  rescanIntervalMs: number;
  /** How long a file that does not parse may stay unparseable before we call it invalid. */
  settleMs?: number;
  logger?: Logger;
}

interface Entry {
  file: string;
  version: FileVersion;
  endpoint: InstanceEndpoint;
  socket?: string;
}

export const LOCAL_RELAY = "local-relay";
/** A socket must be this old before a sweep may remove it (and a sweep follows a removal this late). */
const SWEEP_MIN_AGE_MS = 5_000;

export function endpointFromRegistration(reg: Registration, transport = LOCAL_RELAY): InstanceEndpoint {
  const endpoint: InstanceEndpoint = {
    key: `${transport}:${reg.name}`,
    name: reg.name,
    transport,
    hostname: reg.hostname,
    cwd: reg.cwd,
    connectedAt: reg.connectedAt,
    // With a socket the host is never dialled; "localhost" keeps the Host header ordinary.
    baseUrl: reg.socket ? "http://localhost" : `http://127.0.0.1:${reg.port}`,
  };
  if (reg.socket) endpoint.socketPath = reg.socket;
  if (reg.auth) endpoint.auth = { username: reg.auth.username, password: reg.auth.password };
  if (reg.heartbeatAt) endpoint.heartbeatAt = reg.heartbeatAt;
  if (reg.version) endpoint.version = reg.version;
  return endpoint;
}

export class LocalRelayTransport implements Transport {
  readonly name = LOCAL_RELAY;
  readonly #dir: string;
  readonly #opts: LocalRelayOptions;
  readonly #log: Logger;
  readonly #entries = new Map<string, Entry>(); // by file name
  readonly #reported = new Map<string, string>(); // file → problem already reported
  readonly #settle = new Map<string, NodeJS.Timeout>();
  readonly #pending = new Map<string, Promise<void>>(); // serialises loads of one file
  readonly #listeners = new Listeners<TransportEvent>();
  #watcher: FSWatcher | undefined;
  #rescanTimer: NodeJS.Timeout | undefined;
  #sweepTimer: NodeJS.Timeout | undefined;
  #sweepRun: Promise<void> | undefined;
  #selfWatch: FSWatcherNode | undefined;
  #recreating = false;
  /** Who owned the registry directory at start: a recreated one gets the same owner. */
  #owner: { uid: number; gid: number } | undefined;
  #sweepAgain = false;
  /** Rescans run one at a time: two at once could each replace the watcher and leak one. */
  #rescanning: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(opts: LocalRelayOptions) {
    this.#dir = path.resolve(opts.dir);
    this.#opts = opts;
    this.#log = (opts.logger ?? silentLogger).child({ transport: LOCAL_RELAY });
  }

  get dir(): string {
    return this.#dir;
  }

  async start(): Promise<void> {
    this.#owner = await ensureRegistryDir(this.#dir);
    await this.#startWatcher();
    await this.rescan();
    this.#rescanTimer = setInterval(() => void this.rescan().catch((err) => this.#log.error("registry rescan failed", { err })), this.#opts.rescanIntervalMs);
    this.#rescanTimer.unref();
  }

  async #startWatcher(): Promise<void> {
    await this.#watcher?.close();
    const watcher = watch(this.#dir, {
      depth: 0,
      ignoreInitial: true, // the rescan right after start reads what is there
      followSymlinks: false,
      // Only our own file names; temp files of atomic writers start with a dot.
      ignored: (p: string) => p !== this.#dir && nameFromFile(path.basename(p)) === undefined,
      atomic: false, // deliver unlink at once instead of holding it 100 ms
    });
    const onFile = (p: string) => this.#schedule(path.basename(p));
    watcher.on("add", onFile).on("change", onFile).on("unlink", onFile);
    watcher.on("error", (err) => this.#log.warn("registry watcher error", { err }));
    await new Promise<void>((resolve) => watcher.once("ready", () => resolve()));
    if (this.#closed) {
      await watcher.close(); // closed while it started: it must not outlive us
      return;
    }
    this.#watcher = watcher;
    // The directory itself removed (a wipe): recreate it now, not at the next periodic rescan, since
    // until it exists sshd cannot bind any launcher's forwarded socket in it. chokidar reports that only
    // when the directory held files; inotify on the directory itself (fs.watch: "rename") always does.
    this.#selfWatch?.close();
    try {
      const self = fsWatch(this.#dir, { persistent: false });
      self.on("change", (event) => {
        if (event === "rename" && !existsSync(this.#dir)) this.#onDirGone();
      });
      self.on("error", () => self.close());
      this.#selfWatch = self;
    } catch (err) {
      this.#log.warn("cannot watch the registry directory itself", { err });
    }
  }

  /**
   * The directory itself is gone (wiped): recreate it at once — until it exists sshd cannot bind any
   * launcher's forwarded socket in it — then watch the new one and rescan, after any rescan running.
   */
  #onDirGone(): void {
    if (this.#closed || this.#recreating) return;
    this.#recreating = true;
    this.#log.warn("registry directory removed; recreating it", { dir: this.#dir });
    void ensureRegistryDir(this.#dir, this.#owner)
      .catch((err: unknown) => this.#log.error("cannot recreate the registry directory", { err }))
      .then(() => {
        this.#recreating = false;
        return this.rescan({ rewatch: true });
      })
      .catch((err: unknown) => this.#log.error("registry rescan failed", { err }));
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#rescanTimer) clearInterval(this.#rescanTimer);
    if (this.#sweepTimer) clearTimeout(this.#sweepTimer);
    for (const t of this.#settle.values()) clearTimeout(t);
    this.#settle.clear();
    await this.#rescanning.catch(() => {}); // a rescan may be replacing the watcher
    await this.#sweepRun?.catch(() => {});
    this.#selfWatch?.close();
    await this.#watcher?.close();
    await Promise.allSettled(this.#pending.values());
  }

  list(): InstanceEndpoint[] {
    return [...this.#entries.values()].map((e) => e.endpoint);
  }

  subscribe(listener: (event: TransportEvent) => void): () => void {
    return this.#listeners.add(listener);
  }

  /** Re-reads the whole directory: files the watcher missed appear, vanished ones go. */
  rescan(opts: { rewatch?: boolean } = {}): Promise<void> {
    const run = this.#rescanning.catch(() => {}).then(() => this.#rescanOnce(opts.rewatch ?? false));
    this.#rescanning = run;
    return run;
  }

  async #rescanOnce(rewatch: boolean): Promise<void> {
    if (this.#closed) return;
    let files: string[];
    try {
      // A watcher on a removed directory sees nothing of the new one.
      if (rewatch) await this.#startWatcher();
      files = await fs.readdir(this.#dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      // The directory was wiped (tmp cleaners, reboots): recreate it and watch the new one, so
      // launchers that re-register land somewhere we look.
      this.#log.warn("registry directory disappeared; recreating it", { dir: this.#dir });
      await ensureRegistryDir(this.#dir, this.#owner);
      await this.#startWatcher();
      files = await fs.readdir(this.#dir);
    }
    const present = new Set(files.filter((f) => nameFromFile(f) !== undefined));
    const all = new Set([...present, ...this.#entries.keys()]);
    await Promise.all([...all].map((f) => this.#schedule(f)));
    // Not awaited: probing sockets must never hold up the next rescan.
    void this.sweepSockets().catch((err: unknown) => this.#log.warn("socket sweep failed", { err }));
  }

  /** Removes dead tunnel sockets no registration names (see sweepDeadSockets). */
  sweepSockets(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    // One sweep at a time; a request during one is served by another pass right after it, and the
    // promise returned covers that pass too.
    if (this.#sweepRun) {
      this.#sweepAgain = true;
      return this.#sweepRun;
    }
    const run = (async () => {
      try {
        do {
          this.#sweepAgain = false;
          const inUse = new Set([...this.#entries.values()].flatMap((e) => (e.socket ? [path.resolve(e.socket)] : [])));
          const removed = await sweepDeadSockets(this.#dir, inUse, { minAgeMs: SWEEP_MIN_AGE_MS, probeTimeoutMs: 1_000 });
          for (const p of removed) this.#log.info("removed a dead tunnel socket that no registration uses", { socket: p });
        } while (this.#sweepAgain && !this.#closed);
      } finally {
        this.#sweepRun = undefined;
      }
    })();
    this.#sweepRun = run;
    return run;
  }

  /** A registration went away: its connection may have left a socket behind. Look a little later. */
  #sweepSoon(): void {
    if (this.#sweepTimer || this.#closed) return;
    this.#sweepTimer = setTimeout(() => {
      this.#sweepTimer = undefined;
      void this.sweepSockets().catch((err: unknown) => this.#log.warn("socket sweep failed", { err }));
    }, SWEEP_MIN_AGE_MS);
    this.#sweepTimer.unref();
  }

  /**
   * Queues a reload of one file behind any load of it already running. `final` is the look taken after
   * the settle delay: a file still unparseable then is reported.
   */
  #schedule(file: string, final = false): Promise<void> {
    const prev = this.#pending.get(file) ?? Promise.resolve();
    const next = prev.then(() => this.#load(file, final)).catch((err) => this.#log.error("registry load failed", { file, err }));
    this.#pending.set(file, next);
    void next.then(() => {
      if (this.#pending.get(file) === next) this.#pending.delete(file);
    });
    return next;
  }

  async #load(file: string, final: boolean): Promise<void> {
    if (this.#closed) return;
    const timer = this.#settle.get(file);
    if (timer) {
      clearTimeout(timer);
      this.#settle.delete(file);
    }
    const result = await readRegistration(this.#dir, file);
    const current = this.#entries.get(file);
    if (result.ok) {
      if (current && sameVersion(current.version, result.version)) return;
      const reg = result.registration;
      if (reg.socket) {
        const problem = await socketProblem(reg.socket, result.ownerUid);
        if (problem) return this.#invalid(file, problem);
      }
      this.#reported.delete(file);
      const endpoint = endpointFromRegistration(reg);
      this.#entries.set(file, { file, version: result.version, endpoint, ...(reg.socket ? { socket: reg.socket } : {}) });
      this.#log.info(current ? "registration updated" : "registration added", { instance: reg.name });
      this.#listeners.emit({ type: "upsert", endpoint });
      return;
    }
    if (result.problem === "disappeared") {
      this.#reported.delete(file);
      this.#forget(file, "registration removed");
      return;
    }
    if (result.transient && !final) {
      // Possibly mid-write (a writer that does not rename atomically). Keep what we had, if anything,
      // and look again shortly; a further write event brings us back sooner and restarts the wait.
      const settle = setTimeout(() => {
        this.#settle.delete(file);
        void this.#schedule(file, true);
      }, this.#opts.settleMs ?? 300);
      settle.unref();
      this.#settle.set(file, settle);
      return;
    }
    this.#invalid(file, result.problem);
  }

  #invalid(file: string, problem: string): void {
    this.#forget(file, "registration no longer valid");
    this.#reportOnce(file, problem);
  }

  #reportOnce(file: string, problem: string): void {
    if (this.#reported.get(file) === problem) return;
    this.#reported.set(file, problem);
    this.#log.warn("ignoring registry file", { file: path.join(this.#dir, file), reason: problem });
  }

  #forget(file: string, why: string): void {
    const entry = this.#entries.get(file);
    if (!entry) return;
    this.#entries.delete(file);
    this.#log.info(why, { instance: entry.endpoint.name });
    if (entry.socket) this.#sweepSoon();
    this.#listeners.emit({ type: "remove", key: entry.endpoint.key });
  }

  async prune(key: string, reason: string): Promise<boolean> {
    const entry = [...this.#entries.values()].find((e) => e.endpoint.key === key);
    if (!entry) return false;
    const removed = await removeRegistration(this.#dir, entry.file, entry.version);
    if (!removed) return false; // rewritten since we judged it: the new version gets its own chance
    if (entry.socket) await removeSocketInDir(this.#dir, entry.socket);
    this.#log.warn("pruned dead instance", { instance: entry.endpoint.name, reason });
    this.#forget(entry.file, "registration pruned");
    return true;
  }
}

/**
 * The SSH reverse tunnel to the relay, kept up for as long as the launcher runs.
 *
 * One `ssh` process per attempt carries everything: the forward (`-R`), and on its stdin the registration
 * lines that the remote script (remote-script.ts) writes into the relay's registry. Heartbeats are more
 * lines on the same stdin, so no registration, heartbeat or probe ever opens another SSH connection.
 *
 * Every CHECK_MS a "check" line asks the relay script to verify that the forwarded socket still exists and
 * that the registration file is still ours (it rewrites it if not): a wiped registry or a replaced file is
 * repaired within seconds, not at the next heartbeat.
 *
 * Retry: 0.5 s, doubling with ±20% jitter up to 30 s; the backoff resets only after 60 s of healthy
 * tunnel. While this machine has no network at all, every second instead (OFFLINE_RETRY_MS). A wall-clock jump against the monotonic clock (the laptop slept), or the launcher itself having
 * been frozen for seconds (SIGSTOP, a suspended VM), restarts the tunnel at once: the relay may well have
 * given up on a connection that could not answer its keepalives.
 */
import { spawn as nodeSpawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import path from "node:path";
import { createInterface } from "node:readline";
import { tunnelSocketFile, type Registration } from "../shared/registration.js";
import { backoffDelay, sleep as defaultSleep, type BackoffPolicy, type Sleep } from "../shared/retry.js";
import { silentLogger, type Logger } from "../shared/logger.js";
import { REMOTE_EXIT, remoteCommand } from "./remote-script.js";

export const TUNNEL_BACKOFF: BackoffPolicy = { initialMs: 500, maxMs: 30_000, factor: 2, jitter: 0.2 };
/** A tunnel up this long has earned a fresh backoff. */
export const HEALTHY_RESET_MS = 60_000;
export const HEARTBEAT_MS = 20_000;
/** How often a connected tunnel asks the relay script to check its socket and registration file. */
export const CHECK_MS = 2_000;
/**
 * No "alive" for this long although checks were sent: the relay script is gone while ssh lingers (it
 * waits for forwarded connections to close before exiting). Reconnect. Generous, so a slow link is not
 * mistaken for a dead script; a dead connection is ServerAlive's to notice.
 */
export const CHECK_DEAD_MS = 30_000;
/**
 * Failures that never reached the relay (no network here: Wi-Fi gone, no route, no DNS) cost the relay
 * nothing, so they are retried this often without growing the backoff: the tunnel is back about a second
 * after the network is.
 */
export const OFFLINE_RETRY_MS = 1_000;
const LOCAL_NETWORK_FAILURE = /Network is unreachable|No route to host|Could not resolve hostname|Temporary failure in name resolution|Name or service not known/i;
/** A wall-clock step larger than this beyond the monotonic clock means the machine was asleep. */
const CLOCK_JUMP_MS = 5_000;
/** Linux sun_path is 108 bytes including the NUL. */
const MAX_SOCKET_PATH = 107;

export type ForwardMode = "socket" | "tcp";

/** Why an attempt ended, in terms of what the user must do. `fatal` ones cannot be fixed by retrying. */
export interface AttemptFailure {
  fatal: boolean;
  /** One line saying what went wrong and what to fix. */
  message: string;
  nameTaken?: boolean;
}

export type AttemptResult = { ok: true } | ({ ok: false } & AttemptFailure);

/** The registration fields that do not depend on the connection. */
export type RegistrationBase = Omit<Registration, "port" | "socket" | "nonce" | "heartbeatAt" | "connectedAt">;

export interface TunnelOptions {
  /** RELAY_SSH_CMD, already split into words. */
  sshCommand: string[];
  /** The registry directory on the relay. */
  registryDir: string;
  forward: ForwardMode;
  localPort: number;
  base: RegistrationBase;
  logger?: Logger;
  spawn?: (cmd: string, args: string[], opts: SpawnOptions) => ChildProcess;
  sleep?: Sleep;
  random?: () => number;
  now?: () => number;
  monotonic?: () => number;
  heartbeatMs?: number;
  checkMs?: number;
  /** How long the first connection may take before we call it failed. */
  connectTimeoutMs?: number;
}

export type TunnelState = "connecting" | "up" | "down" | "closed";

/** Classifies what ssh said on stderr into a line for the user. */
export function classifySshFailure(stderr: string, exitCode: number | null, stdout: string): AttemptFailure {
  const last = stderr.trim().split("\n").filter(Boolean).at(-1) ?? "";
  const remoteError = /^error: (.*)$/m.exec(stdout)?.[1];
  if (exitCode === REMOTE_EXIT.nameTaken || /^taken$/m.test(stdout)) return { fatal: false, nameTaken: true, message: "the name is taken on the relay" };
  // A hardened relay's forced command refusing us (exit 6) will refuse every retry the same way.
  if (remoteError) return { fatal: exitCode === REMOTE_EXIT.registryUnwritable || exitCode === REMOTE_EXIT.refused, message: `the relay says: ${remoteError}` };
  if (/Permission denied|Too many authentication failures/i.test(stderr)) {
    return { fatal: true, message: `SSH authentication to the relay failed (${last}): check the key and user in RELAY_SSH_CMD` };
  }
  if (/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|No .* host key is known/i.test(stderr)) {
    return { fatal: true, message: `the relay's SSH host key is not trusted (${last}): connect once with plain ssh to accept it, or fix known_hosts` };
  }
  if (/Could not resolve hostname/i.test(stderr)) return { fatal: true, message: `${last}: check the host in RELAY_SSH_CMD` };
  if (/remote port forwarding failed|forwarding.*(denied|prohibited|disabled)|administratively prohibited/i.test(stderr)) {
    const listenPath = /listen path (\S+)/.exec(last)?.[1];
    const dir = listenPath ? `; and check that the directory of ${listenPath} exists on the relay (opencode-mcp creates RELAY_REGISTRY_DIR)` : "";
    return { fatal: true, message: `the relay refused the reverse forward (${last}): allow it in the relay's sshd (AllowStreamLocalForwarding / AllowTcpForwarding), or try RELAY_FORWARD=tcp${dir}` };
  }
  if (exitCode === 127 || /command not found|not found$/im.test(stderr)) return { fatal: true, message: `a command was not found (${last}): check RELAY_SSH_CMD` };
  if (/Bad configuration option|Bad .* option|illegal option|usage: ssh/i.test(stderr)) return { fatal: true, message: `ssh rejected its arguments (${last}): check RELAY_SSH_CMD` };
  return { fatal: false, message: last || `ssh exited with code ${exitCode}` };
}

export class Tunnel extends EventEmitter {
  readonly #opts: TunnelOptions;
  readonly #log: Logger;
  readonly #spawn: NonNullable<TunnelOptions["spawn"]>;
  readonly #sleep: Sleep;
  readonly #now: () => number;
  readonly #monotonic: () => number;
  #state: TunnelState = "connecting";
  #child: ChildProcess | undefined;
  #registration: Registration | undefined;
  #ready = false;
  #closed = false;
  #wake = new AbortController();
  #heartbeat: NodeJS.Timeout | undefined;
  #checkTimer: NodeJS.Timeout | undefined;
  /** The current connection's relay script understands "check" lines. */
  #canCheck = false;
  /** When the relay script last answered a check (or the connection came up). */
  #lastAlive = 0;
  #clockTimer: NodeJS.Timeout | undefined;
  #loop: Promise<void> | undefined;
  #upSince: number | undefined;
  /** Resolves when the current connection's ssh exits, with why. */
  #attemptEnded: Promise<AttemptFailure> | undefined;
  #lastFailure: string | undefined;

  constructor(opts: TunnelOptions) {
    super();
    this.#opts = opts;
    this.#log = (opts.logger ?? silentLogger).child({ component: "tunnel" });
    this.#spawn = opts.spawn ?? nodeSpawn;
    this.#sleep = opts.sleep ?? defaultSleep;
    this.#now = opts.now ?? Date.now;
    this.#monotonic = opts.monotonic ?? (() => performance.now());
  }

  get state(): TunnelState {
    return this.#state;
  }
  get name(): string {
    return this.#opts.base.name;
  }
  get registration(): Registration | undefined {
    return this.#registration;
  }
  get lastFailure(): string | undefined {
    return this.#lastFailure;
  }
  get sshPid(): number | undefined {
    return this.#child?.pid;
  }

  /** opencode had to move to another local port: forward there from the next connection on. */
  setLocalPort(port: number): void {
    this.#opts.localPort = port;
    this.#opts.base = { ...this.#opts.base, localPort: port };
    if (this.#child) this.restartNow("the local port changed");
  }

  /** Renames the instance (after "taken"); only before the tunnel runs. */
  rename(name: string): void {
    this.#opts.base = { ...this.#opts.base, name };
  }

  #setState(s: TunnelState, detail?: string): void {
    if (this.#state === s) return;
    this.#state = s;
    this.#log.info(`tunnel ${s}`, detail ? { detail } : {});
    this.emit("state", s, detail);
  }

  /**
   * One connection attempt. Resolves when the relay script says "ready" (the forward is in place and the
   * registry writable) or when the attempt fails; the ssh process keeps running after "ready".
   */
  async attempt(): Promise<AttemptResult> {
    const nonce = randomBytes(8).toString("hex");
    const { registryDir, forward, localPort } = this.#opts;
    const name = this.#opts.base.name;
    const socket = forward === "socket" ? path.posix.join(registryDir, tunnelSocketFile(name, nonce)) : undefined;
    if (socket && socket.length > MAX_SOCKET_PATH) {
      return { ok: false, fatal: true, message: `the socket path ${socket} is longer than Unix sockets allow: use a shorter RELAY_REGISTRY_DIR or RELAY_FORWARD=tcp` };
    }
    const spec = socket ? `${socket}:127.0.0.1:${localPort}` : `0:127.0.0.1:${localPort}`;
    const [cmd, ...pre] = this.#opts.sshCommand;
    const args = [
      ...pre,
      "-T",
      "-o", "ExitOnForwardFailure=yes",
      "-o", "ServerAliveInterval=15",
      "-o", "ServerAliveCountMax=3",
      "-o", "ConnectTimeout=15",
      "-R", spec,
      remoteCommand({ dir: registryDir, name, id: this.#opts.base.id ?? nonce, nonce, ...(socket ? { socket } : {}) }),
    ];
    this.#log.debug("starting ssh", { cmd, spec });
    let child: ChildProcess;
    try {
      child = this.#spawn(cmd!, args, { stdio: ["pipe", "pipe", "pipe"] });
    } catch (err) {
      return { ok: false, fatal: true, message: `cannot run ${cmd}: ${(err as Error).message}` };
    }
    this.#child = child;
    this.#canCheck = false;
    let stderr = "";
    let stdout = "";
    let allocatedPort: number | undefined;
    child.stderr!.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-8192);
      const m = /Allocated port (\d+) for remote forward/.exec(stderr);
      if (m) allocatedPort = Number(m[1]);
    });
    child.stdin!.on("error", () => {}); // EPIPE when ssh dies; the exit handler reports it
    const lines = createInterface({ input: child.stdout! });
    const exited = new Promise<number | null>((resolve) => {
      child.once("error", (err: NodeJS.ErrnoException) => {
        stderr += `\n${err.code === "ENOENT" ? `${cmd}: command not found` : err.message}`;
        resolve(127);
      });
      child.once("exit", (code) => resolve(code));
    });

    const result = await new Promise<AttemptResult>((resolve) => {
      const timer = setTimeout(() => {
        resolve({ ok: false, fatal: false, message: `no answer from the relay within ${this.#opts.connectTimeoutMs ?? 30_000} ms` });
        child.kill("SIGTERM");
      }, this.#opts.connectTimeoutMs ?? 30_000);
      lines.on("line", (line) => {
        stdout += `${line}\n`;
        if (line === "ready") {
          clearTimeout(timer);
          resolve({ ok: true });
        } else if (line === "ok") {
          this.emit("registered", this.#registration);
        } else if (line === "caps check") {
          if (this.#child === child) this.#canCheck = true;
        } else if (line === "alive") {
          if (this.#child === child) this.#lastAlive = this.#monotonic();
        } else if (line === "restored") {
          this.#log.warn("the registration on the relay was missing or not ours: rewritten", { name: this.name });
          this.emit("registered", this.#registration);
        } else if ((line.startsWith("error: ") || line === "taken") && this.#child === child && this.#state === "up") {
          // The relay script gave up (its socket is gone: registry wiped). ssh would linger while the
          // relay holds forwarded connections open; this connection is useless, so end it now.
          this.#log.warn("the relay script ended the connection", { detail: line.slice("error: ".length) });
          child.kill("SIGTERM");
        }
      });
      void exited.then((code) => {
        clearTimeout(timer);
        resolve({ ok: false, ...classifySshFailure(stderr, code, stdout) });
      });
    });
    if (!result.ok) {
      this.#child = undefined;
      return result;
    }
    if (forward === "tcp") {
      // ssh prints the allocated port before the session starts, so it is known by "ready".
      if (allocatedPort === undefined) {
        child.kill("SIGTERM");
        return { ok: false, fatal: true, message: "ssh did not report the allocated remote port: RELAY_FORWARD=tcp needs ssh to log at INFO (remove LogLevel=ERROR or QUIET from RELAY_SSH_CMD), or use the default socket forward" };
      }
    }
    const connectedAt = new Date(this.#now()).toISOString();
    this.#registration = {
      ...this.#opts.base,
      ...(socket ? { socket } : { port: allocatedPort! }),
      nonce,
      connectedAt,
      heartbeatAt: connectedAt,
    };
    this.#attemptEnded = exited.then((code) => {
      if (this.#child === child) this.#child = undefined;
      return classifySshFailure(stderr, code, stdout);
    });
    if (this.#ready) this.#writeRegistration();
    return result;
  }

  /** opencode is answering: from now on every connection registers it (with `extra`, e.g. its version). */
  setReady(extra: Partial<RegistrationBase> = {}): void {
    this.#ready = true;
    this.#opts.base = { ...this.#opts.base, ...extra };
    if (this.#registration) this.#registration = { ...this.#registration, ...extra };
    if (this.#state === "up" || this.#child) this.#writeRegistration();
  }

  #writeRegistration(): void {
    const child = this.#child;
    if (!child?.stdin?.writable || !this.#registration) return;
    this.#registration = { ...this.#registration, heartbeatAt: new Date(this.#now()).toISOString() };
    child.stdin.write(`${JSON.stringify(this.#registration)}\n`);
  }

  /**
   * Runs the tunnel until close(): the first attempt's result is returned by firstResult (for fail-fast
   * before the TUI starts); afterwards it retries for ever.
   */
  start(first?: AttemptResult): void {
    this.#startClockWatch();
    this.#heartbeat = setInterval(() => {
      if (this.#ready && this.#state === "up") this.#writeRegistration();
    }, this.#opts.heartbeatMs ?? HEARTBEAT_MS);
    this.#heartbeat.unref();
    this.#checkTimer = setInterval(() => {
      const child = this.#child;
      if (!this.#canCheck || this.#state !== "up" || !child?.stdin?.writable) return;
      if (this.#monotonic() - this.#lastAlive > CHECK_DEAD_MS) {
        this.restartNow(`the relay script has not answered for ${Math.round(CHECK_DEAD_MS / 1000)} s`);
        return;
      }
      child.stdin.write("check\n");
    }, this.#opts.checkMs ?? CHECK_MS);
    this.#checkTimer.unref();
    this.#loop = this.#run(first);
  }

  async #run(first?: AttemptResult): Promise<void> {
    let failures = 0;
    let result = first;
    while (!this.#closed) {
      if (!result) {
        this.#setState("connecting");
        result = await this.attempt();
      }
      if (this.#closed) break;
      if (result.ok) {
        this.#upSince = this.#monotonic();
        this.#lastAlive = this.#upSince;
        this.#lastFailure = undefined;
        this.#setState("up");
        const ended = await this.#attemptEnded!;
        if (this.#closed) break;
        const upFor = this.#monotonic() - this.#upSince;
        if (upFor >= HEALTHY_RESET_MS) failures = 0;
        this.#lastFailure = ended.message;
        this.#setState("down", ended.message);
      } else {
        this.#lastFailure = result.message;
        this.#setState("down", result.message);
        if (result.nameTaken) this.#log.warn("name taken on the relay by another live launcher; retrying", { name: this.name });
      }
      const offline = !result.ok && LOCAL_NETWORK_FAILURE.test(result.message);
      result = undefined;
      const delay = offline ? OFFLINE_RETRY_MS : backoffDelay(TUNNEL_BACKOFF, failures++, this.#opts.random);
      this.#log.info("reconnecting", { inMs: Math.round(delay) });
      try {
        await this.#sleep(delay, this.#wake.signal);
      } catch {
        // woken early: the clock jumped, or close()
        this.#wake = new AbortController();
        failures = 0;
      }
    }
  }

  #startClockWatch(): void {
    let wall = this.#now();
    let mono = this.#monotonic();
    this.#clockTimer = setInterval(() => {
      const w = this.#now();
      const m = this.#monotonic();
      const drift = w - wall - (m - mono);
      const tick = m - mono;
      wall = w;
      mono = m;
      if (Math.abs(drift) > CLOCK_JUMP_MS) this.restartNow(`the clock jumped ${Math.round(drift / 1000)} s (the machine slept?)`);
      // A 1 s timer that fires seconds late: this process was frozen (SIGSTOP, a suspended VM or container).
      else if (tick > 1_000 + CLOCK_JUMP_MS) this.restartNow(`the launcher was frozen for ${Math.round(tick / 1000)} s`);
    }, 1_000);
    this.#clockTimer.unref();
  }

  /** Drops the current connection (if any) and reconnects at once with a fresh backoff. */
  restartNow(why: string): void {
    if (this.#closed) return;
    this.#log.warn("restarting the tunnel now", { why });
    this.#child?.kill("SIGTERM");
    this.#wake.abort();
  }

  /**
   * Ends the tunnel: closes ssh's stdin so the relay script removes the registration, waits for ssh to
   * exit (bounded), then kills it.
   */
  async close(graceMs = 3_000): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    if (this.#checkTimer) clearInterval(this.#checkTimer);
    if (this.#clockTimer) clearInterval(this.#clockTimer);
    this.#wake.abort();
    const child = this.#child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.stdin?.end();
      const done = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), graceMs).unref())]);
      if (!done) {
        child.kill("SIGTERM");
        const gone = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 1_000).unref())]);
        if (!gone) child.kill("SIGKILL");
      }
    }
    this.#setState("closed");
    await this.#loop?.catch(() => {});
  }
}

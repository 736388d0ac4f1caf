/**
 * `opencode-connected` (no subcommand): start OpenCode with its API on a free local port and a random
 * password, keep it registered on the relay through the tunnel (or in the local registry), and on every
 * way out — opencode quitting or crashing, SIGTERM, SIGHUP — close the tunnel and remove the
 * registration. Exits with opencode's exit code.
 *
 * The terminal belongs to the TUI: this file writes to it only before the TUI starts (what name, where,
 * and fail-fast errors); everything else goes to the log file.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { constants as osConstants } from "node:os";
import getPort, { portNumbers } from "get-port";
import type { Logger } from "../shared/logger.js";
import type { Registration } from "../shared/registration.js";
import { nextName, type LauncherConfig } from "./config.js";
import { ensureLocalRegistry, nameTakenLocally, removeLocalRegistration, writeLocalRegistration } from "./local-registry.js";
import { spawnOpencode, waitForOpencode, type OpencodeChild } from "./opencode-process.js";
import { RunStateStore, type RunState } from "./run-state.js";
import { Tunnel, type AttemptResult } from "./tunnel.js";

/** Names tried (name, name-2, …) before giving up on finding a free one. */
const MAX_NAME_TRIES = 20;
/** Ports tried when another process grabs ours between choosing it and opencode binding it. */
const MAX_PORT_TRIES = 3;
const READY_TIMEOUT_MS = 60_000;
const CHILD_EXIT_GRACE_MS = 5_000;

export interface RunIo {
  /** The user's terminal, before the TUI takes it. */
  say(line: string): void;
  logger: Logger;
  env: NodeJS.ProcessEnv;
}

function exitCodeOf(e: { code: number | null; signal: NodeJS.Signals | null }): number {
  if (e.code !== null) return e.code;
  const n = e.signal ? osConstants.signals[e.signal] : undefined;
  return n ? 128 + n : 1;
}

export async function runLauncher(config: LauncherConfig, io: RunIo): Promise<number> {
  const log = io.logger;
  const id = randomUUID();
  const password = config.password ?? randomBytes(24).toString("base64url");
  const auth = { username: config.username, password };
  const authHeader = `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString("base64")}`;
  const state = new RunStateStore(config.stateDir);
  let port = await getPort({ port: portNumbers(4096, 5095) });
  let name = config.name;

  const started = new Date().toISOString();
  let tunnel: Tunnel | undefined;
  let localNonce: string | undefined;
  const cleanups: Array<() => Promise<unknown>> = [];
  let cleaned: Promise<void> | undefined;
  const cleanup = () =>
    (cleaned ??= (async () => {
      for (const c of cleanups.reverse()) await c().catch((err: unknown) => log.error("cleanup step failed", { err }));
    })());

  // Signals are handled from the first moment of a run, not only once opencode is up: a SIGTERM that
  // lands while the tunnel connects or opencode starts must clean up like any other.
  let child: OpencodeChild["child"] | undefined;
  let stopSignal: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    // In the TUI, Ctrl-C reaches opencode from the terminal itself: it decides. Without a TUI we pass it on.
    if (signal === "SIGINT" && child && !config.serve) return;
    log.info("signal received", { signal, opencodeRunning: Boolean(child) });
    stopSignal ??= signal;
    if (child) {
      child.kill(signal);
      const c = child;
      setTimeout(() => c.kill("SIGKILL"), CHILD_EXIT_GRACE_MS).unref();
      return;
    }
    void cleanup().then(() => process.exit(128 + (osConstants.signals[signal] ?? 15)));
  };
  const onTerm = () => onSignal("SIGTERM");
  const onHup = () => onSignal("SIGHUP");
  const onInt = () => onSignal("SIGINT");
  process.on("SIGTERM", onTerm).on("SIGHUP", onHup).on("SIGINT", onInt);
  cleanups.push(async () => void process.off("SIGTERM", onTerm).off("SIGHUP", onHup).off("SIGINT", onInt));

  const runState = (): RunState => ({
    id,
    pid: process.pid,
    name,
    mode: tunnel ? "relay" : "local",
    ...(tunnel ? { forward: config.forward, relay: config.sshCommandText!, tunnel: tunnel.state, ...(tunnel.lastFailure ? { tunnelDetail: tunnel.lastFailure } : {}), ...(tunnel.sshPid ? { sshPid: tunnel.sshPid } : {}) } : {}),
    ...(localNonce ? { nonce: localNonce } : tunnel?.registration?.nonce ? { nonce: tunnel.registration.nonce } : {}),
    registryDir: config.registryDir,
    localPort: port,
    username: auth.username,
    password,
    cwd: config.cwd,
    logFile: config.logFile,
    startedAt: started,
    updatedAt: "",
  });
  // Writes go one after another (an older snapshot never lands last), and none after the state is
  // removed on the way out: a tunnel closing during cleanup would otherwise write it back.
  let stateRemoved = false;
  let stateWrites: Promise<unknown> = Promise.resolve();
  const saveState = () =>
    (stateWrites = stateWrites.then(() => (stateRemoved ? undefined : state.write(runState()).catch((err: unknown) => log.warn("cannot write run state", { err })))));

  if (config.sshCommand) {
    tunnel = new Tunnel({
      sshCommand: config.sshCommand,
      registryDir: config.registryDir,
      forward: config.forward,
      localPort: port,
      base: { name, hostname: config.hostname, localPort: port, cwd: config.cwd, auth, id, pid: process.pid },
      logger: log,
    });
    const t = tunnel;
    cleanups.push(() => t.close()); // also ends an attempt a signal interrupts
    let first: AttemptResult | undefined;
    for (let n = 1; n <= MAX_NAME_TRIES; n++) {
      first = await tunnel.attempt();
      if (first.ok || !first.nameTaken) break;
      const next = nextName(config.name, n + 1);
      io.say(`opencode-connected: "${name}" is in use on the relay by another running launcher; using "${next}".`);
      name = next;
      tunnel.rename(name);
    }
    if (!first!.ok && first!.fatal) {
      io.say(`opencode-connected: cannot connect to the relay: ${first!.message}`);
      return 1;
    }
    if (!first!.ok && first!.nameTaken) {
      io.say(`opencode-connected: no free name found after ${MAX_NAME_TRIES} tries; set INSTANCE_NAME`);
      return 1;
    }
    t.on("state", () => void saveState());
    if (first!.ok) io.say(`opencode-connected: "${name}" is connected to the relay (${config.forward} forward). Log: ${config.logFile}`);
    else io.say(`opencode-connected: the relay is not reachable yet (${first!.message}); starting OpenCode, retrying in the background. Log: ${config.logFile}`);
    t.start(first);
  } else {
    try {
      await ensureLocalRegistry(config.registryDir);
    } catch (err) {
      io.say(`opencode-connected: the registry directory ${config.registryDir} is not usable (${(err as NodeJS.ErrnoException).code ?? err}): set RELAY_REGISTRY_DIR`);
      return 1;
    }
    for (let n = 2; await nameTakenLocally(config.registryDir, name, id); n++) {
      if (n > MAX_NAME_TRIES) {
        io.say(`opencode-connected: no free name found after ${MAX_NAME_TRIES} tries; set INSTANCE_NAME`);
        return 1;
      }
      const next = nextName(config.name, n);
      io.say(`opencode-connected: "${name}" is in use by another running launcher; using "${next}".`);
      name = next;
    }
    io.say(`opencode-connected: "${name}" registered locally in ${config.registryDir} (no RELAY_SSH_CMD). Log: ${config.logFile}`);
  }
  cleanups.push(async () => {
    stateRemoved = true;
    await stateWrites;
    await state.remove(id);
  });
  await saveState();

  // opencode itself, with its API on `port`, retried on a fresh port if another process took ours.
  const env = { ...io.env, OPENCODE_SERVER_PASSWORD: password, OPENCODE_SERVER_USERNAME: auth.username };
  let oc: OpencodeChild | undefined;
  for (let tryNo = 1; ; tryNo++) {
    oc = spawnOpencode({ bin: config.opencodeBin, port, serve: config.serve, args: config.opencodeArgs, env, cwd: config.cwd });
    child = oc.child;
    if (stopSignal) onSignal(stopSignal); // a signal arrived while we were spawning
    log.info("opencode started", { opencodePid: oc.child.pid, port, mode: config.serve ? "serve" : "tui" });
    const ready = await waitForOpencode(port, authHeader, oc.exited, READY_TIMEOUT_MS);
    if (ready.state === "healthy") {
      log.info("opencode is answering", { version: ready.version });
      if (tunnel) tunnel.setReady({ version: ready.version });
      else {
        localNonce = randomBytes(8).toString("hex");
        const now = new Date().toISOString();
        const reg: Registration = { name, hostname: config.hostname, port, localPort: port, cwd: config.cwd, connectedAt: now, heartbeatAt: now, auth, id, nonce: localNonce, pid: process.pid, version: ready.version };
        await writeLocalRegistration(config.registryDir, reg);
        const nonce = localNonce;
        cleanups.push(() => removeLocalRegistration(config.registryDir, name, nonce));
      }
      await saveState();
      break;
    }
    if (ready.state === "timeout") {
      log.error("opencode did not answer on its port in time; registering anyway", { port });
      tunnel?.setReady();
      break;
    }
    // Exited before answering. A fast failure right after we chose the port is most likely the port
    // race (someone bound it first): try another port, a few times.
    if (stopSignal) {
      await cleanup();
      return exitCodeOf(await oc.exited);
    }
    if (ready.code === 0 || tryNo >= MAX_PORT_TRIES || !(await portTakenByOther(port))) {
      log.warn("opencode exited before it was ready", { code: ready.code });
      await cleanup();
      if (ready.code === 127) io.say(`opencode-connected: cannot run "${config.opencodeBin}": install OpenCode (npm i -g opencode-ai) or set OPENCODE_BIN`);
      return ready.code ?? 1;
    }
    const old = port;
    port = await getPort({ port: portNumbers(4096, 5095), exclude: [old] });
    log.warn("port taken before opencode could bind it; retrying on another", { old, port });
    tunnel?.setLocalPort(port);
  }

  // Every way out ends here: wait for opencode (signals are forwarded to it), then clean up.
  const exit = await oc.exited;
  log.info("opencode exited", { code: exit.code, signal: exit.signal });
  await cleanup();
  return exitCodeOf(exit);
}

async function portTakenByOther(port: number): Promise<boolean> {
  const free = await getPort({ port });
  return free !== port;
}

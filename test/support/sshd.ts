/**
 * A real OpenSSH server on loopback for tests: its own host key, client keys, authorized_keys and
 * known_hosts in a temp directory, `sshd -D -e` in the foreground with its log captured. Tests can drop
 * every connection (as a relay restart or network cut would), stop and restart the listener on the same
 * port, and read what sshd logged.
 *
 * Nothing here skips: without /usr/sbin/sshd, startSshd throws, so a test that needs it fails loudly.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import getPort from "get-port";
import { waitFor } from "./wait.js";

const execFileP = promisify(execFile);

export const SSHD_BIN = "/usr/sbin/sshd";
const PRIVSEP_DIR = "/run/sshd";
const STOP_GRACE_MS = 3_000;

export interface SshdOptions {
  /**
   * Extra sshd_config lines. sshd keeps the FIRST value it reads for a keyword, so plain lines are put
   * before the defaults (they override them); from the first `Match` line on, they go at the end, where
   * Match blocks must be.
   */
  extraConfig?: string;
  /** Prefix for the authorized_keys line, e.g. `restrict,port-forwarding,command="…"`. */
  authorizedKeysOptions?: string;
  readyTimeoutMs?: number;
  /**
   * Run sshd inside this network namespace (`ip netns exec`), listening on `listenAddress` (there,
   * 0.0.0.0 is fine: the namespace is the test's own) and `port` (default 2222).
   */
  netns?: string;
  listenAddress?: string;
  port?: number;
  /** Addresses clients use to reach it: known_hosts trusts each; sshCmd uses the first. Default: the listen address. */
  clientAddresses?: string[];
}

export interface Sshd {
  /** sshd listens on port (on 127.0.0.1 unless listenAddress says otherwise). */
  port: number;
  /** The login user: the current user (os.userInfo().username). */
  user: string;
  /** Temp dir holding keys, config, known_hosts. */
  dir: string;
  /** Private ed25519 key (no passphrase) authorized for `user`. */
  clientKey: string;
  /** known_hosts trusting this sshd's host key for [127.0.0.1]:port. */
  knownHosts: string;
  /** A RELAY_SSH_CMD string that logs in with clientKey; no paths contain spaces, so splitting on spaces is safe. */
  sshCmd: string;
  /** The same with a generated key that is NOT authorized. */
  badKeySshCmd: string;
  /** sshCmd for another of the client addresses. */
  sshCmdFor(address: string): string;
  /** The listener's pid while it runs. */
  listenerPid(): number | undefined;
  /**
   * PIDs of sshd's per-connection processes: descendants of the listener whose command is sshd
   * ("sshd: root@notty", "sshd: user [priv]", "sshd: user [net]"), not the commands they run.
   */
  sessionPids(): number[];
  /** SIGKILL every process under the listener (connections and what they run); the listener keeps running. */
  dropConnections(): void;
  /** Stop the listener and everything under it. */
  stop(): Promise<void>;
  /** Start the listener again on the same port with the same keys and config. */
  restart(): Promise<void>;
  /** Everything sshd logged (all runs). */
  log(): string;
  /** stop() and remove the temp dir. */
  close(): Promise<void>;
}

/** Every listener this process started and has not stopped: killed on exit as a last resort. */
const running = new Set<ChildProcess>();
/** Temp dirs of sshds not yet closed: removed on exit too. */
const dirs = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const child of running) {
      if (child.pid === undefined) continue;
      for (const pid of descendants(child.pid)) tryKill(pid, "SIGKILL");
      tryKill(child.pid, "SIGKILL");
    }
    running.clear();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    dirs.clear();
  });
}

function tryKill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    /* already gone */
  }
}

interface ProcInfo {
  pid: number;
  ppid: number;
  comm: string;
  state: string;
}

/** /proc/PID/stat: "pid (comm) state ppid …", where comm may itself contain spaces and parentheses. */
function readStat(pid: number): ProcInfo | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  const open = stat.indexOf("(");
  const close = stat.lastIndexOf(")");
  if (open < 0 || close < open) return undefined;
  const rest = stat.slice(close + 2).split(" ");
  return { pid, comm: stat.slice(open + 1, close), state: rest[0] ?? "?", ppid: Number(rest[1]) };
}

function allProcesses(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const info = readStat(Number(name));
    if (info) out.push(info);
  }
  return out;
}

/** Live (non-zombie) descendants of `root`, parents before children. */
function descendantInfos(root: number): ProcInfo[] {
  const procs = allProcesses();
  const byParent = new Map<number, ProcInfo[]>();
  for (const p of procs) {
    const list = byParent.get(p.ppid) ?? [];
    list.push(p);
    byParent.set(p.ppid, list);
  }
  const out: ProcInfo[] = [];
  const queue = [root];
  while (queue.length) {
    const pid = queue.shift()!;
    for (const child of byParent.get(pid) ?? []) {
      if (child.state !== "Z") out.push(child);
      queue.push(child.pid);
    }
  }
  return out;
}

function descendants(root: number): number[] {
  return descendantInfos(root).map((p) => p.pid);
}

async function keygen(file: string, comment: string): Promise<void> {
  await execFileP("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", file]);
}

function sshCommandFor(port: number, key: string, knownHosts: string, user: string, address = "127.0.0.1"): string {
  // -F /dev/null: no ~/.ssh/config or /etc/ssh/ssh_config (ControlMaster, SendEnv, … would leak in).
  // No LogLevel: ssh keeps the first value it sees for each option, so LogLevel=ERROR here would also
  // hide "Allocated port N for remote forward" (an INFO message) from anyone appending options.
  return [
    "ssh",
    "-F", "/dev/null",
    "-p", String(port),
    "-i", key,
    "-o", `UserKnownHostsFile=${knownHosts}`,
    "-o", "GlobalKnownHostsFile=/dev/null",
    "-o", "StrictHostKeyChecking=yes",
    "-o", "IdentitiesOnly=yes",
    "-o", "BatchMode=yes",
    `${user}@${address}`,
  ].join(" ");
}

/** One TCP connect that reads the identification string. */
function readBanner(port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect(port, "127.0.0.1");
    let data = "";
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.on("data", (d: Buffer) => {
      data += d.toString("latin1");
      if (data.includes("SSH-2.0")) done(true);
    });
    sock.on("error", () => done(false));
    sock.on("close", () => done(data.includes("SSH-2.0")));
  });
}

export async function startSshd(opts: SshdOptions = {}): Promise<Sshd> {
  if (!existsSync(SSHD_BIN)) throw new Error(`OpenSSH server not found at ${SSHD_BIN}: apt-get install openssh-server`);
  installExitHook();
  mkdirSync(PRIVSEP_DIR, { recursive: true, mode: 0o755 });

  const dir = mkdtempSync(path.join(os.tmpdir(), "ocr-sshd-"));
  dirs.add(dir);
  try {
    const user = os.userInfo().username;
    const hostKey = path.join(dir, "host_ed25519");
    const clientKey = path.join(dir, "client_ed25519");
    const badKey = path.join(dir, "bad_ed25519");
    const authorizedKeys = path.join(dir, "authorized_keys");
    const knownHosts = path.join(dir, "known_hosts");
    const config = path.join(dir, "sshd_config");
    await Promise.all([keygen(hostKey, "ocr-test-host"), keygen(clientKey, "ocr-test-client"), keygen(badKey, "ocr-test-bad")]);

    const listen = opts.listenAddress ?? "127.0.0.1";
    const addresses = opts.clientAddresses ?? [listen];
    const port = opts.netns ? (opts.port ?? 2222) : (opts.port ?? (await getPort({ host: "127.0.0.1" })));
    const pubkey = readFileSync(`${clientKey}.pub`, "utf8").trim();
    writeFileSync(authorizedKeys, `${opts.authorizedKeysOptions ? `${opts.authorizedKeysOptions} ` : ""}${pubkey}\n`, { mode: 0o600 });
    const [hostType, hostBlob] = readFileSync(`${hostKey}.pub`, "utf8").trim().split(/\s+/);
    writeFileSync(knownHosts, addresses.map((a) => `[${a}]:${port} ${hostType} ${hostBlob}\n`).join(""));
    const lines = [
      `Port ${port}`,
      `ListenAddress ${listen}`,
      `HostKey ${hostKey}`,
      `PidFile ${path.join(dir, "sshd.pid")}`,
      `AuthorizedKeysFile ${authorizedKeys}`,
      "StrictModes no",
      "UsePAM no",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "PubkeyAuthentication yes",
      "PermitRootLogin prohibit-password",
      "AllowTcpForwarding yes",
      "AllowStreamLocalForwarding yes",
      "StreamLocalBindUnlink yes",
      "ClientAliveInterval 5",
      "ClientAliveCountMax 3",
      "LogLevel VERBOSE",
    ];
    const extra = (opts.extraConfig ?? "").split("\n");
    const matchAt = extra.findIndex((l) => /^\s*match\s/i.test(l));
    const overrides = (matchAt < 0 ? extra : extra.slice(0, matchAt)).filter((l) => l.trim());
    const matchBlocks = matchAt < 0 ? [] : extra.slice(matchAt);
    writeFileSync(config, `${[...overrides, ...lines, ...matchBlocks].join("\n").trimEnd()}\n`);

    try {
      await execFileP(SSHD_BIN, ["-t", "-f", config]);
    } catch (err) {
      const e = err as { stderr?: string; stdout?: string; message: string };
      throw new Error(`sshd rejected its config ${config}: ${(e.stderr || e.stdout || e.message).trim()}\n--- config ---\n${readFileSync(config, "utf8")}`);
    }

    let logText = "";
    let child: ChildProcess | undefined;
    const readyTimeoutMs = opts.readyTimeoutMs ?? 10_000;

    const start = async () => {
      const argv = [SSHD_BIN, "-D", "-e", "-f", config];
      // ip netns exec execs sshd: the pid is sshd's own.
      const [cmd, ...args] = opts.netns ? ["ip", "netns", "exec", opts.netns, ...argv] : argv;
      const c = spawn(cmd!, args, { stdio: ["ignore", "pipe", "pipe"], detached: false });
      child = c;
      running.add(c);
      let spawnError: Error | undefined;
      c.on("error", (err) => (spawnError = err));
      c.once("exit", () => running.delete(c));
      const runStart = logText.length;
      const onData = (d: Buffer) => (logText += d.toString());
      c.stdout!.on("data", onData);
      c.stderr!.on("data", onData);
      const gone = () => spawnError !== undefined || c.exitCode !== null || c.signalCode !== null;
      try {
        await waitFor(
          async () => {
            if (gone()) return true;
            if (logText.slice(runStart).includes(`Server listening on ${listen} port ${port}`)) return true;
            // Inside a namespace only its log can tell (the listener is not reachable from here).
            return opts.netns ? false : readBanner(port);
          },
          { timeoutMs: readyTimeoutMs, what: `sshd to listen on ${listen}:${port}${opts.netns ? ` in ${opts.netns}` : ""}` },
        );
      } catch (err) {
        await stopChild();
        throw new Error(`${(err as Error).message}\n--- sshd log ---\n${logText}`);
      }
      if (gone()) {
        running.delete(c);
        throw new Error(`sshd on port ${port} exited before listening (${spawnError?.message ?? `code ${c.exitCode}, signal ${c.signalCode}`})\n--- sshd log ---\n${logText}`);
      }
    };

    const stopChild = async () => {
      const c = child;
      if (!c || c.pid === undefined) return;
      if (c.exitCode !== null || c.signalCode !== null) {
        running.delete(c);
        return;
      }
      const exited = new Promise<void>((resolve) => c.once("exit", () => resolve()));
      // Freeze the listener so it forks nothing new, take the connections down, then end it. Its
      // connection processes have their own sessions and would outlive a plain SIGTERM.
      tryKill(c.pid, "SIGSTOP");
      for (const pid of descendants(c.pid)) tryKill(pid, "SIGKILL");
      tryKill(c.pid, "SIGTERM");
      tryKill(c.pid, "SIGCONT");
      const ended = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), STOP_GRACE_MS).unref())]);
      if (!ended) {
        tryKill(c.pid, "SIGKILL");
        await exited;
      }
      running.delete(c);
    };

    await start();

    return {
      port,
      user,
      dir,
      clientKey,
      knownHosts,
      sshCmd: sshCommandFor(port, clientKey, knownHosts, user, addresses[0]),
      badKeySshCmd: sshCommandFor(port, badKey, knownHosts, user, addresses[0]),
      sshCmdFor: (address: string) => sshCommandFor(port, clientKey, knownHosts, user, address),
      listenerPid: () => (child && child.exitCode === null && child.signalCode === null ? child.pid : undefined),
      sessionPids: () => {
        const pid = child?.pid;
        if (pid === undefined || child!.exitCode !== null || child!.signalCode !== null) return [];
        return descendantInfos(pid)
          .filter((p) => p.comm === "sshd")
          .map((p) => p.pid);
      },
      dropConnections: () => {
        const pid = child?.pid;
        if (pid === undefined) return;
        for (const d of descendants(pid)) tryKill(d, "SIGKILL");
      },
      stop: stopChild,
      restart: async () => {
        await stopChild();
        await start();
      },
      log: () => logText,
      close: async () => {
        await stopChild();
        rmSync(dir, { recursive: true, force: true });
        dirs.delete(dir);
      },
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    dirs.delete(dir);
    throw err;
  }
}

/**
 * The faults, each injected while every laptop's instance is running `send` turns, and the scenario
 * runner that measures one: time until the relay shows the instance as not online (detect), time from the
 * fault's end until a new `send` to it succeeds (recover), turns lost or duplicated (model ledger against
 * `read`), failed turns on the instances the fault should not touch, and processes, relay file descriptors
 * and registry files left behind.
 */
import { chmodSync, chownSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { waitFor } from "../support/wait.js";
import { processCount, relayFds, settledCount, staleRegistryFiles } from "./leaks.js";
import { pidsIn } from "./netns.js";
import { checkLedger, TurnDriver } from "./turns.js";
import { tryKill, type Laptop, type World } from "./world.js";

export interface FaultContext {
  world: World;
  target: Laptop;
  /** Resolves after `ms`: a fault's own duration (a link down for 5 s), never a wait for a condition. */
  hold(ms: number): Promise<void>;
  /** Adds a line to the report about how the fault was made. */
  note(line: string): void;
}

export interface Fault {
  name: string;
  /** The laptop whose instance the fault hits (1-based). */
  target: number;
  /** The fault hits the relay itself: every instance may fail turns while it lasts. */
  relayWide?: boolean;
  /**
   * The fault kills the target's opencode (directly, or with its launcher): a turn in flight at that
   * moment dies with the agent, even if the model had finished its reply. Such turns are reported as
   * interrupted, not lost.
   */
  killsAgent?: boolean;
  /** The fault kills opencode-mcp, which its client restarts once. */
  restartsRelay?: boolean;
  /** Injects the fault and resolves when it is over (link back up, process killed, file replaced). */
  inject(ctx: FaultContext): Promise<void>;
  /** How long after the fault ends the instance may take to work again before the run fails. */
  recoverWithinMs: number;
  /** Extra checks after recovery; returns problems. */
  verify?(ctx: FaultContext): Promise<string[]>;
}

export interface FaultResult {
  name: string;
  target: string;
  /** ms from injection until the relay showed the instance not online; undefined if it never did. */
  detectMs?: number;
  /** ms from the end of the fault until a new send succeeded; undefined if it never did. */
  recoverMs?: number;
  turnsOk: number;
  turnsFailed: number;
  /** Turns in flight when the fault killed the agent (see Fault.killsAgent). */
  interrupted: string[];
  othersFailed: number;
  lost: string[];
  duplicated: string[];
  leakedProcs: number;
  leakedFds: number;
  staleFiles: string[];
  problems: string[];
  notes: string[];
  passed: boolean;
}

const hold = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function registryFile(world: World, name: string): string {
  return path.join(world.registry, `${name}.json`);
}

/** Writes a file in place of the registration atomically, as an attacker or a broken tool might. */
function replaceRegistration(file: string, write: (tmp: string) => void): void {
  const tmp = `${file}.chaos-tmp`;
  rmSync(tmp, { force: true });
  write(tmp);
  renameSync(tmp, file);
}

const NOBODY = 65534;

/** The laptop's link goes down (its packets vanish, connections go half-open) for `ms`, then back. */
function linkDown(name: string, target: number, ms: number, recoverWithinMs: number): Fault {
  return {
    name,
    target,
    recoverWithinMs,
    async inject({ world, target: laptop, hold }) {
      world.net.linkDown(laptop.index);
      try {
        await hold(ms);
      } finally {
        world.net.linkUp(laptop.index);
      }
    },
  };
}

export const FAULTS: Fault[] = [
  {
    // No fault: turns for a few seconds. Shows normal operation, and brings the relay's connection pools
    // to their steady size before the first baseline that counts.
    name: "none (baseline)",
    target: 1,
    recoverWithinMs: 30_000,
    async inject({ hold }) {
      await hold(3_000);
    },
  },
  linkDown("link down 5 s", 1, 5_000, 30_000),
  linkDown("link down 90 s (half-open)", 2, 90_000, 60_000),
  {
    name: "lossy link: 20% loss + latency, 20 s",
    target: 1,
    recoverWithinMs: 30_000,
    async inject({ world, target, hold, note }) {
      note(world.net.degrade(target.index, { lossPct: 20, delayMs: 200, jitterMs: 50 }));
      try {
        await hold(20_000);
      } finally {
        world.net.restore(target.index);
      }
    },
  },
  {
    name: "relay sshd restarted",
    target: 1,
    relayWide: true,
    recoverWithinMs: 30_000,
    async inject({ world }) {
      await world.sshd.restart();
    },
  },
  {
    name: "relay registry wiped",
    target: 1,
    relayWide: true,
    recoverWithinMs: 30_000,
    async inject({ world }) {
      rmSync(world.registry, { recursive: true, force: true });
    },
  },
  {
    name: "kill -9 the launcher's ssh",
    target: 1,
    recoverWithinMs: 30_000,
    async inject({ target }) {
      const [ssh] = target.main.childPids("ssh");
      if (ssh === undefined) throw new Error(`${target.name}: no ssh process under the launcher`);
      tryKill(ssh, "SIGKILL");
    },
  },
  {
    name: "kill -9 the launcher",
    target: 2,
    killsAgent: true,
    recoverWithinMs: 60_000,
    async inject({ target }) {
      const pid = target.main.pid;
      if (pid === undefined) throw new Error(`${target.name}: the launcher is not running`);
      tryKill(pid, "SIGKILL");
    },
  },
  {
    name: "kill -9 opencode",
    target: 1,
    killsAgent: true,
    recoverWithinMs: 60_000,
    async inject({ target }) {
      const [oc] = target.main.childPids("opencode");
      if (oc === undefined) throw new Error(`${target.name}: no opencode process under the launcher`);
      tryKill(oc, "SIGKILL");
    },
  },
  {
    name: "kill -9 opencode-mcp",
    target: 1,
    relayWide: true,
    restartsRelay: true,
    recoverWithinMs: 30_000,
    async inject({ world }) {
      const pid = world.mcp.pid;
      if (pid === undefined) throw new Error("opencode-mcp is not running");
      tryKill(pid, "SIGKILL");
    },
  },
  {
    name: "laptop suspended 25 s (SIGSTOP/SIGCONT)",
    target: 2,
    recoverWithinMs: 30_000,
    async inject({ target, hold }) {
      // Everything on the laptop freezes, as in a suspend: launcher, ssh, opencode, the model.
      const pids = pidsIn(target.link.ns);
      for (const p of pids) tryKill(p, "SIGSTOP");
      await hold(25_000);
      for (const p of pids) tryKill(p, "SIGCONT");
    },
  },
  {
    name: "registration replaced by garbage",
    target: 1,
    recoverWithinMs: 20_000,
    async inject({ world, target }) {
      replaceRegistration(registryFile(world, target.name), (tmp) => writeFileSync(tmp, "{ this is not a registration"));
    },
  },
  {
    name: "registration replaced by a symlink",
    target: 1,
    recoverWithinMs: 20_000,
    async inject({ world, target }) {
      const file = registryFile(world, target.name);
      const decoy = path.join(world.root, "decoy.json");
      writeFileSync(decoy, JSON.stringify({ name: target.name, hostname: "decoy", port: 1, cwd: "/", connectedAt: new Date().toISOString() }));
      replaceRegistration(file, (tmp) => symlinkSync(decoy, tmp));
    },
    async verify({ world }) {
      const decoy = path.join(world.root, "decoy.json");
      const problems: string[] = [];
      try {
        readlinkSync(registryFile(world, "lap1"));
        problems.push("the symlink is still in the registry");
      } catch {
        /* replaced by a regular file: good */
      }
      rmSync(decoy, { force: true });
      return problems;
    },
  },
  {
    name: "registration for another user's socket",
    target: 1,
    recoverWithinMs: 20_000,
    async inject({ world, target }) {
      // Another user's server on a socket in the registry, and a registration pointing our name at it.
      const sock = path.join(world.registry, `intruder-${process.pid}.sock`);
      const server = net.createServer((c) => {
        intruderConnections++;
        c.destroy();
      });
      await new Promise<void>((r) => server.listen(sock, () => r()));
      intruder = { server, sock }; // verify() closes it, whatever happens next
      chownSync(sock, NOBODY, NOBODY);
      chmodSync(sock, 0o777);
      const reg = { name: target.name, hostname: "intruder", cwd: "/", connectedAt: new Date().toISOString(), socket: sock };
      replaceRegistration(registryFile(world, target.name), (tmp) => {
        writeFileSync(tmp, JSON.stringify(reg));
        chownSync(tmp, NOBODY, NOBODY);
      });
    },
    async verify() {
      const problems = intruderConnections > 0 ? [`the relay connected ${intruderConnections} time(s) to another user's socket`] : [];
      if (intruder) {
        await new Promise<void>((r) => intruder!.server.close(() => r()));
        rmSync(intruder.sock, { force: true });
        intruder = undefined;
      }
      return problems;
    },
  },
];

let intruder: { server: net.Server; sock: string } | undefined;
let intruderConnections = 0;

export async function runFault(world: World, fault: Fault, opts: { settleMs?: number; runId?: number } = {}): Promise<FaultResult> {
  const target = world.laptops.find((l) => l.index === fault.target)!;
  const notes: string[] = [];
  const ctx: FaultContext = { world, target, hold, note: (l) => notes.push(l) };
  const names = world.laptops.map((l) => l.name);
  const problems: string[] = [];
  try {
    await world.waitOnline(names, 60_000);
  } catch (err) {
    // An earlier fault left an instance down for good: nothing after it can be measured.
    return { ...emptyResult(fault, target), problems: [`not started: ${(err as Error).message}`] };
  }

  // Quiet baseline: nothing in flight.
  const procsBefore = await settledCount(() => processCount(world));
  const mcpPidBefore = world.mcp.pid;
  const fdsBefore = relayFds(world);

  // Turn ids unique across the run: f<fault number>x<laptop>-<n>.
  const tag = `f${opts.runId ?? FAULTS.indexOf(fault) + 1}`;
  const drivers = new Map(world.laptops.map((l) => [l.index, new TurnDriver(world.mcp, l.name, `${tag}x${l.index}`)]));
  for (const d of drivers.values()) d.start();
  try {
    await waitFor(() => [...drivers.values()].every((d) => d.okCount() >= 1), { timeoutMs: 60_000, what: "a first turn on every instance" });
  } catch (err) {
    for (const d of drivers.values()) await d.stop();
    return { ...emptyResult(fault, target), problems: [`not started: ${(err as Error).message}`] };
  }
  const restartsBefore = world.mcp.restarts;

  // Watch the relay's view of the target while the fault runs.
  let detectAt: number | undefined;
  let watching = true;
  const injectedAt = Date.now();
  const watcher = (async () => {
    while (watching) {
      const i = await world.instance(target.name);
      if (detectAt === undefined && i !== undefined && (i === "missing" || i.status !== "online")) detectAt = Date.now();
      await hold(200);
    }
  })();
  let clearedAt = Date.now();
  try {
    await fault.inject(ctx);
    clearedAt = Date.now();
  } catch (err) {
    problems.push(`injection failed: ${(err as Error).message}`);
  }

  const targetDriver = drivers.get(target.index)!;
  let recoverMs: number | undefined;
  try {
    const rec = await waitFor(() => targetDriver.firstOkAfter(clearedAt), { timeoutMs: fault.recoverWithinMs, intervalMs: 50, what: `a send to ${target.name} to succeed again` });
    recoverMs = rec.endedAt - clearedAt;
    await world.waitOnline(names, fault.recoverWithinMs);
    // Every other instance works too (a relay-wide fault hits them all).
    await waitFor(() => [...drivers.values()].every((d) => d.firstOkAfter(clearedAt)), { timeoutMs: fault.recoverWithinMs, what: "a successful send on every instance after the fault" });
  } catch (err) {
    problems.push((err as Error).message);
  }
  watching = false;
  await watcher;
  for (const d of drivers.values()) await d.stop();

  const lost: string[] = [];
  const duplicated: string[] = [];
  const interrupted = fault.killsAgent ? targetDriver.records.filter((r) => r.startedAt <= injectedAt && r.endedAt >= injectedAt).map((r) => r.id) : [];
  for (const l of world.laptops) {
    const c = await checkLedger(world.mcp, drivers.get(l.index)!, l.ledgerFile);
    lost.push(...c.lost.filter((id) => !(l === target && interrupted.includes(id))).map((id) => `${l.name}:${id}`));
    duplicated.push(...c.duplicated.map((id) => `${l.name}:${id}`));
    if (c.readError) problems.push(`read ${l.name}: ${c.readError}`);
  }
  if (fault.verify) problems.push(...(await fault.verify(ctx)));
  const restarts = world.mcp.restarts - restartsBefore;
  if (restarts !== (fault.restartsRelay ? 1 : 0)) problems.push(`opencode-mcp was restarted ${restarts} time(s) during this fault (expected ${fault.restartsRelay ? 1 : 0})`);

  // Leaks: the process count returns to the baseline, the relay's descriptors too (same process only).
  const procsAfter = await settledCount(() => processCount(world), procsBefore, opts.settleMs ?? 15_000);
  // Descriptors: pooled keep-alive connections to live instances come and go with load and are not
  // counted; connections to dead tunnels are, and so is any growth of everything else.
  let leakedFds = 0;
  if (fdsBefore && world.mcp.pid === mcpPidBefore) {
    const excess = () => {
      const now = relayFds(world);
      return now ? Math.max(0, now.other - fdsBefore.other) + now.stale : 0;
    };
    leakedFds = await settledCount(excess, 0, opts.settleMs ?? 15_000);
  }
  // Sockets left by killed connections are the relay's to sweep (a few seconds after the removal).
  let stale = staleRegistryFiles(world);
  try {
    await waitFor(() => (stale = staleRegistryFiles(world)).length === 0, { timeoutMs: opts.settleMs ?? 15_000, intervalMs: 250, what: "stray registry files to go" });
  } catch {
    /* reported */
  }

  const others = [...drivers.entries()].filter(([i]) => i !== target.index).map(([, d]) => d);
  const othersFailed = fault.relayWide ? 0 : others.reduce((n, d) => n + d.records.filter((r) => !r.ok).length, 0);
  const result: FaultResult = {
    name: fault.name,
    target: target.name,
    ...(detectAt !== undefined ? { detectMs: detectAt - injectedAt } : {}),
    ...(recoverMs !== undefined ? { recoverMs } : {}),
    turnsOk: targetDriver.records.filter((r) => r.ok).length,
    turnsFailed: targetDriver.records.filter((r) => !r.ok).length,
    interrupted,
    othersFailed,
    lost,
    duplicated,
    leakedProcs: Math.max(0, procsAfter - procsBefore),
    leakedFds,
    staleFiles: stale,
    problems,
    notes,
    passed: false,
  };
  result.passed = problems.length === 0 && recoverMs !== undefined && lost.length === 0 && duplicated.length === 0 && result.leakedProcs === 0 && result.leakedFds === 0 && stale.length === 0 && othersFailed === 0;
  return result;
}

function emptyResult(fault: Fault, target: Laptop): FaultResult {
  return { name: fault.name, target: target.name, turnsOk: 0, turnsFailed: 0, interrupted: [], othersFailed: 0, lost: [], duplicated: [], leakedProcs: 0, leakedFds: 0, staleFiles: [], problems: [], notes: [], passed: false };
}

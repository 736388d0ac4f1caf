/**
 * The load run: 20 instances (each laptop gets more launchers), 100 `send` calls in parallel spread over
 * them, and 1000 registration files created and removed in the registry while the calls run — twice, to
 * see whether the relay's memory stays flat. Checks: every call succeeds with its own reply, the model
 * produced each turn once, and afterwards (extra launchers stopped) no process, relay descriptor or
 * registry file is left over.
 */
import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { waitFor } from "../support/wait.js";
import { processCount, relayFds, settledCount, staleRegistryFiles } from "./leaks.js";
import { producedReplies, replyFor } from "./turns.js";
import type { SupervisedLauncher, World } from "./world.js";

export const LOAD = { instances: 20, parallelSends: 100, churnFiles: 1000, rounds: 2 } as const;

export interface LoadRound {
  sendsOk: number;
  failures: string[];
  wallMs: number;
  p50Ms: number;
  p95Ms: number;
  churned: number;
  rssMb: number;
}

export interface LoadResult {
  instances: number;
  startMs: number;
  rounds: LoadRound[];
  rssBeforeMb: number;
  duplicated: number;
  leakedProcs: number;
  leakedFds: number;
  staleFiles: string[];
  problems: string[];
  passed: boolean;
}

function rssMb(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : 0;
}

/** Creates and removes `total` registration files (at most 100 present at a time) until done. */
async function churn(registry: string, total: number, round: number): Promise<number> {
  const live: string[] = [];
  let made = 0;
  while (made < total) {
    const name = `churn${round}-${String(made).padStart(4, "0")}`;
    const file = path.join(registry, `${name}.json`);
    const tmp = path.join(registry, `.${name}.tmp`);
    // Nothing listens on port 9 in the relay namespace: each one is probed and refused.
    writeFileSync(tmp, JSON.stringify({ name, hostname: "churn", port: 9, cwd: "/churn", connectedAt: new Date().toISOString() }));
    renameSync(tmp, file);
    live.push(file);
    made++;
    if (live.length > 100) rmSync(live.shift()!, { force: true });
    if (made % 20 === 0) await new Promise((r) => setImmediate(r));
  }
  for (const f of live) rmSync(f, { force: true });
  return made;
}

export async function runLoad(world: World, log: (l: string) => void): Promise<LoadResult> {
  const problems: string[] = [];
  const mcpPid = world.mcp.pid;
  const restartsBefore = world.mcp.restarts;
  await world.waitOnline(world.laptops.map((l) => l.name), 60_000);
  const procsBefore = processCount(world);
  const fdsBefore = relayFds(world);
  const rssBeforeMb = rssMb(mcpPid);

  // More launchers, spread over the laptops, until there are LOAD.instances.
  const t0 = Date.now();
  const extra: SupervisedLauncher[] = [];
  const perLaptop = Math.ceil((LOAD.instances - world.laptops.length) / world.laptops.length);
  for (const l of world.laptops) for (let k = 2; k < 2 + perLaptop && world.laptops.length + extra.length < LOAD.instances; k++) extra.push(world.addLauncher(l, `${l.name}-i${k}`));
  const names = [...world.laptops.map((l) => l.name), ...extra.map((x) => x.name)];
  await world.waitOnline(names, 240_000);
  const startMs = Date.now() - t0;
  log(`chaos: load: ${names.length} instances online in ${(startMs / 1000).toFixed(1)} s`);

  const rounds: LoadRound[] = [];
  const ids: string[] = [];
  for (let round = 1; round <= LOAD.rounds; round++) {
    const started = Date.now();
    const churned = churn(world.registry, LOAD.churnFiles, round);
    const calls = Array.from({ length: LOAD.parallelSends }, async (_, i) => {
      const instance = names[i % names.length]!;
      const id = `load${round}-${i}`;
      ids.push(id);
      const t = Date.now();
      const r = await world.mcp.call("send", { instance, message: `turn <${id}>`, new_session: true }, 180_000);
      const ok = r.ok && r.text.includes(replyFor(id));
      return { ok, ms: Date.now() - t, why: ok ? "" : `${instance} ${id}: ${r.text.slice(0, 200)}` };
    });
    const results = await Promise.all(calls);
    const made = await churned;
    const times = results.map((r) => r.ms).sort((a, b) => a - b);
    rounds.push({
      sendsOk: results.filter((r) => r.ok).length,
      failures: results.filter((r) => !r.ok).map((r) => r.why),
      wallMs: Date.now() - started,
      p50Ms: percentile(times, 50),
      p95Ms: percentile(times, 95),
      churned: made,
      rssMb: rssMb(mcpPid),
    });
    log(`chaos: load round ${round}: ${rounds.at(-1)!.sendsOk}/${LOAD.parallelSends} ok in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }

  // The model produced every turn exactly once.
  const produced = new Map<string, number>();
  for (const l of world.laptops) for (const [id, n] of producedReplies(l.ledgerFile, (x) => x.startsWith("load"))) produced.set(id, (produced.get(id) ?? 0) + n);
  const duplicated = [...produced.values()].filter((n) => n > 1).length;
  const missing = ids.filter((id) => !produced.has(id));
  if (missing.length) problems.push(`the model never answered ${missing.length} turn(s): ${missing.slice(0, 5).join(", ")}`);

  // Stop the extra launchers (as their users would): everything they started goes with them.
  await Promise.all(extra.map((x) => x.stop()));
  for (const l of world.laptops) l.launchers.splice(0, l.launchers.length, l.main);
  const leakedProcs = Math.max(0, (await settledCount(() => processCount(world), procsBefore, 20_000)) - procsBefore);
  const excessFds = () => {
    const now = relayFds(world);
    return now && fdsBefore ? Math.max(0, now.other - fdsBefore.other) + now.stale : 0;
  };
  const leakedFds = world.mcp.pid === mcpPid ? await settledCount(excessFds, 0, 20_000) : 0;
  let staleFiles = staleRegistryFiles(world);
  try {
    await waitFor(() => (staleFiles = staleRegistryFiles(world)).length === 0, { timeoutMs: 20_000, what: "the registry to hold only the remaining instances" });
  } catch {
    /* reported below */
  }

  if (world.mcp.restarts !== restartsBefore) problems.push(`opencode-mcp died and was restarted ${world.mcp.restarts - restartsBefore} time(s) during the load run`);
  for (const [i, r] of rounds.entries()) if (r.failures.length) problems.push(`round ${i + 1}: ${r.failures.length} send(s) failed: ${r.failures.slice(0, 3).join(" | ")}`);
  if (duplicated) problems.push(`${duplicated} turn(s) produced more than once`);
  if (leakedProcs) problems.push(`${leakedProcs} process(es) more than before the load`);
  if (leakedFds) problems.push(`${leakedFds} relay file descriptor(s) more than before the load`);
  if (staleFiles.length) problems.push(`stale registry files: ${staleFiles.slice(0, 5).join(", ")}${staleFiles.length > 5 ? ", …" : ""}`);
  // Flat memory: the second round may not grow the relay by more than 10% (or 15 MB) over the first.
  const [r1, r2] = [rounds[0]!, rounds.at(-1)!];
  if (rounds.length > 1 && r2.rssMb - r1.rssMb > Math.max(15, r1.rssMb * 0.1)) problems.push(`relay memory grew from ${r1.rssMb.toFixed(0)} MB to ${r2.rssMb.toFixed(0)} MB between rounds`);
  return { instances: names.length, startMs, rounds, rssBeforeMb, duplicated, leakedProcs, leakedFds, staleFiles, problems, passed: problems.length === 0 };
}

export function loadTable(r: LoadResult): string {
  const rows = r.rounds.map((x, i) => `| round ${i + 1} | ${x.sendsOk}/${LOAD.parallelSends} | ${(x.wallMs / 1000).toFixed(1)} s | ${(x.p50Ms / 1000).toFixed(2)} / ${(x.p95Ms / 1000).toFixed(2)} s | ${x.churned} | ${x.rssMb.toFixed(0)} MB |`);
  return [
    `Load: ${r.instances} instances (up in ${(r.startMs / 1000).toFixed(1)} s), ${LOAD.parallelSends} parallel sends per round, ${LOAD.churnFiles} registration files churned per round; relay RSS before ${r.rssBeforeMb.toFixed(0)} MB`,
    "| round | sends ok | wall | send p50 / p95 | files churned | relay RSS after |",
    "|---|---|---|---|---|---|",
    ...rows,
    `duplicated turns ${r.duplicated}, leaked processes ${r.leakedProcs}, leaked relay fds ${r.leakedFds}, stale registry files ${r.staleFiles.length}: ${r.passed ? "pass" : "FAIL"}`,
  ].join("\n");
}

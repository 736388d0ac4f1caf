#!/usr/bin/env node
/**
 * `npm run test:chaos`: builds the machines (network namespaces, real sshd, opencode-mcp, opencode,
 * launchers), injects every fault while turns run, runs the load test, prints the report and exits 1 on
 * any loss, duplicate, leak, failed check or instance that never came back. Namespaces that cannot be
 * created are a failure, never a skip.
 *
 *   node dist/test/chaos/run.js [--only SUBSTRING]... [--no-load] [--json FILE] [--keep]
 */
import { realpathSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { FAULTS, runFault, type FaultResult } from "./faults.js";
import { runLoad, type LoadResult, loadTable } from "./load.js";
import { NetnsUnavailableError } from "./netns.js";
import { faultDetails, faultNotes, faultTable } from "./report.js";
import { waitFor } from "../support/wait.js";
import { TurnDriver } from "./turns.js";
import { World } from "./world.js";

export interface ChaosReport {
  faults: FaultResult[];
  load?: LoadResult;
  totalMs: number;
  passed: boolean;
}

export interface ChaosOptions {
  only?: string[];
  load?: boolean;
  log?: (line: string) => void;
  /** Keep the run's directory (logs, ledgers) for a look afterwards. */
  keep?: boolean;
}

export async function runChaos(opts: ChaosOptions = {}): Promise<ChaosReport> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const started = Date.now();
  const faults = FAULTS.filter((f) => !opts.only?.length || opts.only.some((o) => f.name.includes(o)));
  if (opts.only?.length && faults.length === 0) throw new Error(`--only ${opts.only.join(", ")} matches no fault; faults: ${FAULTS.map((f) => f.name).join("; ")}`);
  const world = await World.create({ laptops: 2 });
  log(`chaos: relay and 2 laptops up in ${((Date.now() - started) / 1000).toFixed(1)} s (${world.root})`);
  const results: FaultResult[] = [];
  let load: LoadResult | undefined;
  let passed = false;
  try {
    await warmUp(world);
    for (const f of faults) {
      const t = Date.now();
      const r = await runFault(world, f);
      results.push(r);
      log(`chaos: ${f.name}: ${r.passed ? "pass" : "FAIL"} in ${((Date.now() - t) / 1000).toFixed(1)} s${r.passed ? "" : ` (${faultDetails([r]).join("; ")})`}`);
      if (r.problems.some((p) => p.startsWith("not started"))) break;
    }
    if (opts.load !== false) {
      load = await runLoad(world, log);
      log(`chaos: load: ${load.passed ? "pass" : "FAIL"}`);
    }
    passed = results.every((r) => r.passed) && (load?.passed ?? true);
  } finally {
    await world.close({ keep: opts.keep || !passed });
    if (!passed) log(`chaos: logs kept in ${world.root}`);
  }
  return { faults: results, ...(load ? { load } : {}), totalMs: Date.now() - started, passed };
}

/**
 * A few turns on every instance before anything is counted: the relay's keep-alive pools and opencode's
 * first-turn work reach their steady state, so the first fault's baseline is not a cold one.
 */
async function warmUp(world: World): Promise<void> {
  await world.waitOnline(world.laptops.map((l) => l.name), 60_000);
  const drivers = world.laptops.map((l) => new TurnDriver(world.mcp, l.name, `warm${l.index}`));
  for (const d of drivers) d.start();
  try {
    await waitFor(() => drivers.every((d) => d.okCount() >= 3), { timeoutMs: 60_000, what: "three warm-up turns on every instance" });
  } finally {
    for (const d of drivers) await d.stop();
  }
}

export function printReport(r: ChaosReport, out: (s: string) => void = (s) => process.stdout.write(`${s}\n`)): void {
  out("");
  out("Chaos report: fault → time to detect (relay shows it not online) → time to recover (a new send works) → turns lost/duplicated → leaks");
  out(faultTable(r.faults));
  for (const n of faultNotes(r.faults)) out(`- ${n}`);
  if (r.load) {
    out("");
    out(loadTable(r.load));
  }
  const details = [...faultDetails(r.faults), ...(r.load && !r.load.passed ? r.load.problems : [])];
  if (details.length) {
    out("");
    out("Failures:");
    for (const d of details) out(`- ${d}`);
  }
  out("");
  out(`chaos: ${r.passed ? "PASS" : "FAIL"} in ${(r.totalMs / 1000).toFixed(0)} s`);
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const only: string[] = [];
  let json: string | undefined;
  let load = true;
  let keep = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--only") only.push(args[++i] ?? "");
    else if (a === "--json") json = args[++i];
    else if (a === "--no-load") load = false;
    else if (a === "--keep") keep = true;
    else {
      process.stderr.write(`chaos: unknown argument ${a}; usage: run.js [--only SUBSTRING]... [--no-load] [--json FILE] [--keep]\n`);
      process.exit(2);
    }
  }
  let report: ChaosReport;
  try {
    report = await runChaos({ only, load, keep });
  } catch (err) {
    if (err instanceof NetnsUnavailableError) {
      process.stderr.write(`chaos: FAIL: ${err.message}\nThe chaos suite does not skip: without network namespaces it cannot show anything.\n`);
      process.exit(1);
    }
    throw err;
  }
  printReport(report);
  if (json) writeFileSync(json, JSON.stringify(report, null, 2));
  process.exit(report.passed ? 0 : 1);
}

// Run only as the entry point (the bench imports this module). Node resolves the main module's real path.
if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) await main();

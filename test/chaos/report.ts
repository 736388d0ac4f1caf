/** The chaos report: one row per fault (and the load run), as a fixed-width table on stdout. */
import type { FaultResult } from "./faults.js";

const seconds = (ms: number | undefined) => (ms === undefined ? "-" : `${(ms / 1000).toFixed(1)} s`);

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [line(header), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.map(line)].join("\n");
}

export function faultTable(results: FaultResult[]): string {
  return table(
    ["fault", "instance", "detect", "recover", "turns ok/failed", "others failed", "lost/dup", "leaked procs/fds", "stale files", "result"],
    results.map((r) => [
      r.name,
      r.target,
      r.detectMs === undefined ? "not offline" : seconds(r.detectMs),
      r.recoverMs === undefined ? "NEVER" : seconds(r.recoverMs),
      `${r.turnsOk}/${r.turnsFailed}`,
      String(r.othersFailed),
      `${r.lost.length}/${r.duplicated.length}`,
      `${r.leakedProcs}/${r.leakedFds}`,
      String(r.staleFiles.length),
      r.passed ? "pass" : "FAIL",
    ]),
  );
}

export function faultNotes(results: FaultResult[]): string[] {
  return results.flatMap((r) => [
    ...r.notes.map((n) => `${r.name}: ${n}`),
    ...(r.interrupted.length ? [`${r.name}: ${r.interrupted.length} turn(s) in flight when opencode died (${r.interrupted.join(", ")}): interrupted with the agent, not counted as lost`] : []),
  ]);
}

export function faultDetails(results: FaultResult[]): string[] {
  const out: string[] = [];
  for (const r of results) {
    if (r.passed) continue;
    const bits = [
      ...r.problems,
      ...(r.lost.length ? [`lost: ${r.lost.join(", ")}`] : []),
      ...(r.duplicated.length ? [`duplicated: ${r.duplicated.join(", ")}`] : []),
      ...(r.staleFiles.length ? [`stale registry files: ${r.staleFiles.join(", ")}`] : []),
      ...(r.leakedProcs ? [`${r.leakedProcs} process(es) more than before`] : []),
      ...(r.leakedFds ? [`${r.leakedFds} relay file descriptor(s) more than before`] : []),
      ...(r.othersFailed ? [`${r.othersFailed} turn(s) failed on instances the fault did not touch`] : []),
    ];
    out.push(`${r.name}: ${bits.join("; ")}`);
  }
  return out;
}

/** `opencode-connected status`: this machine's launcher runs, their tunnels, the relay's registrations, the log's tail. */
import { promises as fs } from "node:fs";
import type { LauncherConfig } from "../config.js";
import { RunStateStore, processAlive } from "../run-state.js";
import { runOnRelay } from "./remote.js";

const LIST_SCRIPT = 'for f in "$1"/*.json; do [ -f "$f" ] && basename "$f" .json; done; true';

export async function statusCommand(config: LauncherConfig, out: (s: string) => void): Promise<number> {
  const runs = await new RunStateStore(config.stateDir).list();
  out(runs.length ? "Launchers on this machine:" : "No launcher is running on this machine.");
  for (const r of runs) {
    const alive = processAlive(r.pid);
    const where = r.mode === "relay" ? `relay (${r.forward} forward), tunnel ${r.tunnel ?? "?"}${r.tunnelDetail ? `: ${r.tunnelDetail}` : ""}` : `local registry ${r.registryDir}`;
    out(`  ${r.name}  pid ${r.pid}${alive ? "" : " (NOT RUNNING: run cleanup)"}  port ${r.localPort}  ${where}  since ${r.startedAt}  ${r.cwd}`);
  }
  if (config.sshCommand) {
    const res = await runOnRelay(config.sshCommand, LIST_SCRIPT, [config.registryDir]);
    if (res.code === 0) {
      const names = res.stdout.split("\n").filter(Boolean);
      out(`Registrations on the relay (${config.registryDir}): ${names.length ? names.join(", ") : "none"}`);
    } else {
      out(`Cannot list the relay's registrations: ${res.stderr.trim().split("\n").at(-1) ?? `exit ${res.code}`}`);
    }
  } else {
    const names = (await fs.readdir(config.registryDir).catch(() => [] as string[])).filter((f) => f.endsWith(".json") && !f.startsWith("."));
    out(`Registrations in ${config.registryDir}: ${names.length ? names.map((f) => f.slice(0, -5)).join(", ") : "none"}`);
  }
  out(`Log: ${config.logFile}`);
  const tail = (await fs.readFile(config.logFile, "utf8").catch(() => "")).trimEnd().split("\n").slice(-10);
  for (const line of tail.filter(Boolean)) out(`  ${line}`);
  return 0;
}

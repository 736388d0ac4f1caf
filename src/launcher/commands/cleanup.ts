/**
 * `opencode-connected cleanup`: forget launcher runs of this user that died without cleaning up (kill -9,
 * power loss): their leftover ssh tunnels, local registrations, and relay registrations. Touches only
 * what carries the id of one of our dead runs.
 */
import { readFileSync } from "node:fs";
import type { LauncherConfig } from "../config.js";
import { removeLocalRegistration } from "../local-registry.js";
import { RunStateStore, processAlive } from "../run-state.js";
import { runOnRelay } from "./remote.js";

// Removes registrations (and their sockets) whose "id" is one of ours; prints what it removed.
const REMOVE_SCRIPT = `dir=$1; shift
for id in "$@"; do
  for f in "$dir"/*.json; do
    [ -f "$f" ] || continue
    if grep -q "\\"id\\":\\"$id\\"" "$f"; then
      s=$(sed -n "s/.*\\"socket\\":\\"\\([^\\"]*\\)\\".*/\\1/p" "$f")
      rm -f "$f"; [ -n "$s" ] && rm -f "$s"
      echo "removed $(basename "$f")"
    fi
  done
done; true`;

function isOurSsh(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("opencode-relay");
  } catch {
    return false;
  }
}

export async function cleanupCommand(config: LauncherConfig, out: (s: string) => void): Promise<number> {
  const store = new RunStateStore(config.stateDir);
  const dead = (await store.list()).filter((r) => !processAlive(r.pid));
  if (dead.length === 0) {
    out("Nothing to clean up: every recorded launcher is running.");
    return 0;
  }
  let failed = false;
  for (const r of dead) {
    if (r.sshPid && processAlive(r.sshPid) && isOurSsh(r.sshPid)) {
      process.kill(r.sshPid, "SIGTERM");
      out(`killed the stale tunnel of ${r.name} (ssh pid ${r.sshPid})`);
    }
    if (r.mode === "local" && r.nonce && (await removeLocalRegistration(r.registryDir, r.name, r.nonce))) out(`removed local registration ${r.name}`);
  }
  const relayRuns = dead.filter((r) => r.mode === "relay");
  if (relayRuns.length && config.sshCommand) {
    const res = await runOnRelay(config.sshCommand, REMOVE_SCRIPT, [config.registryDir, ...relayRuns.map((r) => r.id)]);
    if (res.code === 0) for (const l of res.stdout.split("\n").filter(Boolean)) out(`relay: ${l}`);
    else {
      failed = true;
      out(`could not clean the relay: ${res.stderr.trim().split("\n").at(-1) ?? `exit ${res.code}`}; run cleanup again when it is reachable`);
    }
  } else if (relayRuns.length) {
    out("stale relay registrations may remain: set RELAY_SSH_CMD so cleanup can reach the relay (the relay also prunes dead ones by itself)");
  }
  if (!failed) for (const r of dead) await store.remove(r.id);
  out(`cleaned up ${dead.length} stale launcher run${dead.length === 1 ? "" : "s"}`);
  return failed ? 1 : 0;
}

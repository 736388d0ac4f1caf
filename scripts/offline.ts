/**
 * Runs the current script again inside a fresh network namespace that has only a loopback interface,
 * when it can (root on Linux, with util-linux's unshare): whatever the tests or the bench start — real
 * opencode looks up the npm registry and opencode.ai at start-up — can then reach nothing but 127.0.0.1
 * and ::1. Namespaces the chaos suite makes are created from in there.
 */
import { spawnSync } from "node:child_process";

const MARK = "OCR_OFFLINE_NETNS";

/** True once running inside the loopback-only namespace this made. */
export function isOffline(): boolean {
  return Boolean(process.env[MARK]);
}

/**
 * Re-runs `process.argv` under `unshare --net` and returns its exit code, or undefined when that is not
 * possible or already done (the caller then just goes on).
 */
export function rerunOffline(say: (line: string) => void): number | undefined {
  if (isOffline() || process.platform !== "linux" || process.getuid?.() !== 0) return undefined;
  if (spawnSync("unshare", ["--net", "--", "true"]).status !== 0) return undefined;
  say("running in a private network namespace: only loopback (127.0.0.1, ::1) is reachable");
  const r = spawnSync("unshare", ["--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", process.execPath, ...process.argv.slice(1)], {
    stdio: "inherit",
    env: { ...process.env, [MARK]: "1" },
  });
  return r.status ?? 1;
}

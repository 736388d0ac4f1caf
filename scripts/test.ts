/**
 * `npm test`: the unit and end-to-end suites (node:test, one file at a time), then the chaos suite.
 * `npm run test:unit` and `npm run test:chaos` run one of them.
 *
 * As root on Linux (CI), everything runs inside a private network namespace that has only a loopback
 * interface: real opencode, which would otherwise look up the npm registry and opencode.ai at start-up,
 * cannot reach any address but 127.0.0.1/::1, and neither can anything else a test starts. The chaos
 * suite makes its own namespaces from in there. Without root the tests share the host's network; the
 * chaos suite then fails, saying that it needs root.
 *
 *   node dist/scripts/test.js [all|unit|chaos] [chaos runner options: --only TEXT, --no-load, --keep, --json FILE]
 *   (npm run test:chaos -- --only "kill -9" --keep)
 */
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import path from "node:path";
import { PACKAGE_ROOT } from "../src/shared/package-info.js";
import { isOffline, rerunOffline } from "./offline.js";
const say = (s: string) => process.stderr.write(`test: ${s}\n`);

function testFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir).sort()) {
    const full = path.join(dir, entry);
    if (statSync(full).isDirectory()) out.push(...testFiles(full));
    else if (entry.endsWith(".test.js")) out.push(full);
  }
  return out;
}

function main(): number {
  const [which = "all", ...chaosArgs] = process.argv.slice(2);
  if (!["all", "unit", "chaos"].includes(which)) {
    say(`unknown suite "${which}": use all, unit or chaos`);
    return 2;
  }
  const isolated = rerunOffline(say);
  if (isolated !== undefined) return isolated;
  if (!isOffline()) say("not root: the tests share this machine's network (opencode may try to reach the npm registry)");

  let failed = false;
  if (which !== "chaos") {
    const files = testFiles(path.join(PACKAGE_ROOT, "dist", "test"));
    const r = spawnSync(process.execPath, ["--test", "--test-concurrency=1", ...files], { stdio: "inherit" });
    if (r.status !== 0) failed = true;
  }
  if (which !== "unit") {
    const r = spawnSync(process.execPath, [path.join(PACKAGE_ROOT, "dist", "test", "chaos", "run.js"), ...chaosArgs], { stdio: "inherit" });
    if (r.status !== 0) failed = true;
  }
  return failed ? 1 : 0;
}

process.exit(main());

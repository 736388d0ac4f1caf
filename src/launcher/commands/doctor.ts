/** `opencode-connected doctor`: checks each piece the launcher needs and says what to fix. */
import { spawnSync } from "node:child_process";
import type { LauncherConfig } from "../config.js";
import { ensureLocalRegistry } from "../local-registry.js";
import { runOnRelay } from "./remote.js";

const REGISTRY_CHECK = 'mkdir -p "$1" 2>/dev/null && [ -w "$1" ] && echo writable';

export async function doctorCommand(config: LauncherConfig, out: (s: string) => void): Promise<number> {
  let ok = true;
  const check = (good: boolean, what: string, fix?: string) => {
    out(`${good ? "ok  " : "FAIL"} ${what}${!good && fix ? `\n     fix: ${fix}` : ""}`);
    ok &&= good;
  };
  const oc = spawnSync(config.opencodeBin, ["--version"], { encoding: "utf8", timeout: 20_000 });
  check(oc.status === 0, oc.status === 0 ? `opencode ${oc.stdout.trim()} (${config.opencodeBin})` : `opencode not runnable as "${config.opencodeBin}"`, "npm i -g opencode-ai, or set OPENCODE_BIN");
  if (!config.sshCommand) {
    out(`     RELAY_SSH_CMD is not set: local mode, registry ${config.registryDir}`);
    const writable = await ensureLocalRegistry(config.registryDir).then(() => true, () => false);
    check(writable, `local registry ${config.registryDir} writable`, "set RELAY_REGISTRY_DIR to a directory you can write");
    return ok ? 0 : 1;
  }
  const ssh = spawnSync(config.sshCommand[0]!, ["-V"], { encoding: "utf8", timeout: 10_000 });
  const found = !ssh.error;
  check(found, found ? `${config.sshCommand[0]} found` : `${config.sshCommand[0]} not found`, "install OpenSSH, or fix RELAY_SSH_CMD");
  if (!found) return 1;
  const res = await runOnRelay(config.sshCommand, REGISTRY_CHECK, [config.registryDir]);
  const reached = res.code !== 255 && res.code !== 127 && !/timed out/.test(res.stderr);
  check(reached, reached ? "relay reachable over SSH" : `relay not reachable: ${res.stderr.trim().split("\n").at(-1) ?? ""}`, "check RELAY_SSH_CMD (host, user, key); try it by hand: $RELAY_SSH_CMD true");
  if (reached) check(res.stdout.includes("writable"), `relay registry ${config.registryDir} writable`, "create it on the relay (mkdir -m 700) or set RELAY_REGISTRY_DIR");
  return ok ? 0 : 1;
}

/**
 * A project folder and environment for one `opencode-connected` run against a test relay: its own
 * opencode config (pointing at the scripted model), XDG directories, launcher state and log.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { OPENCODE_BIN, opencodeConfig, opencodeEnv } from "./opencode.js";

export interface LauncherWorkspace {
  root: string;
  cwd: string;
  env: Record<string, string>;
  logFile: string;
}

export function launcherWorkspace(opts: { base: string; name: string; modelUrl: string; sshCmd: string; registry: string; extra?: Record<string, string> }): LauncherWorkspace {
  const root = path.join(opts.base, opts.name);
  const cwd = path.join(root, "project");
  mkdirSync(cwd, { recursive: true });
  writeFileSync(path.join(cwd, "opencode.json"), JSON.stringify(opencodeConfig(opts.modelUrl)));
  const env = opencodeEnv(root, {
    RELAY_SSH_CMD: opts.sshCmd,
    RELAY_REGISTRY_DIR: opts.registry,
    INSTANCE_NAME: opts.name,
    OPENCODE_BIN,
    LOG_LEVEL: "debug",
    ...opts.extra,
  }) as Record<string, string>;
  return { root, cwd, env, logFile: path.join(root, "xdg-state", "opencode-relay", "opencode-connected.log") };
}

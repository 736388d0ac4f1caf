/**
 * The opencode child: the TUI in the user's terminal (stdio inherited, untouched) or `opencode serve`,
 * always with `--port` so its HTTP API is up, and a readiness wait on that API with a deadline.
 */
import { spawn as nodeSpawn, spawnSync, type ChildProcess, type SpawnOptions } from "node:child_process";
import { existsSync } from "node:fs";

/**
 * util-linux's setpriv, when present: opencode is started through `setpriv --pdeathsig TERM` so that it
 * ends with the launcher even when the launcher is killed outright (kill -9, OOM killer) and cannot clean
 * up; an orphaned opencode would keep its port and leak. setpriv execs opencode, so the pid is the same.
 */
let setpriv: string | null | undefined;
/** setpriv's path if it has --pdeathsig (util-linux 2.33+; older ones would refuse the option), else null. */
function setprivPath(): string | null {
  if (setpriv !== undefined) return setpriv;
  const found = process.platform === "linux" ? ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => existsSync(p)) : undefined;
  setpriv = found && (spawnSync(found, ["--help"], { encoding: "utf8", timeout: 2_000 }).stdout ?? "").includes("--pdeathsig") ? found : null;
  return setpriv;
}

export interface OpencodeChild {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function spawnOpencode(opts: {
  bin: string;
  port: number;
  serve: boolean;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  spawn?: (cmd: string, args: string[], o: SpawnOptions) => ChildProcess;
  /** End opencode when the launcher dies (Linux with setpriv). Default true. */
  pdeathsig?: boolean;
}): OpencodeChild {
  const args = opts.serve
    ? ["serve", "--port", String(opts.port), "--hostname", "127.0.0.1", ...opts.args]
    : ["--port", String(opts.port), "--hostname", "127.0.0.1", ...opts.args];
  const wrapper = opts.pdeathsig !== false ? setprivPath() : null;
  const [cmd, argv] = wrapper ? [wrapper, ["--pdeathsig", "TERM", "--", opts.bin, ...args]] : [opts.bin, args];
  const child = (opts.spawn ?? nodeSpawn)(cmd, argv, { stdio: opts.serve ? ["ignore", "ignore", "ignore"] : "inherit", env: opts.env, cwd: opts.cwd });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("error", () => resolve({ code: 127, signal: null }));
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
  return { child, exited };
}

const PROBE_TIMEOUT_MS = 200;

export type Readiness = { state: "healthy"; version: string } | { state: "exited"; code: number | null } | { state: "timeout" };

/** Polls `GET /global/health` on the local port until opencode answers as itself, exits, or time runs out. */
export async function waitForOpencode(port: number, authHeader: string, exited: OpencodeChild["exited"], timeoutMs: number): Promise<Readiness> {
  const deadline = Date.now() + timeoutMs;
  let gone: { code: number | null } | undefined;
  void exited.then((e) => (gone = e));
  while (Date.now() < deadline) {
    if (gone) return { state: "exited", code: gone.code };
    try {
      // A connection made while opencode is still starting can hang unanswered: give up on it quickly
      // and dial again (1 s here cost ~1 s of registration delay, measured by the bench).
      const res = await fetch(`http://127.0.0.1:${port}/global/health`, { headers: { authorization: authHeader }, signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
      if (res.ok && (res.headers.get("content-type") ?? "").includes("json")) {
        const body = (await res.json()) as { healthy?: boolean; version?: string };
        if (body.healthy) return { state: "healthy", version: body.version ?? "unknown" };
      } else {
        await res.body?.cancel();
      }
    } catch {
      /* not up yet */
    }
    await Promise.race([new Promise((r) => setTimeout(r, 100)), exited]);
  }
  return { state: "timeout" };
}

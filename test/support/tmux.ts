/**
 * A terminal program under a real pseudo-terminal, through tmux: read the screen, type keys, see how
 * the program exited. All sessions of one test process share a private tmux server (its own socket and
 * config in a temp dir), so a user's tmux is never touched; the server goes away with the last session
 * and, as a last resort, when the process exits.
 */
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

export const TMUX_BIN = process.env.TMUX_BIN ?? "tmux";

export interface TmuxSession {
  name: string;
  /** The visible screen as text (tmux capture-pane -p). */
  screen(): Promise<string>;
  /** tmux send-keys: with `literal`, `keys` is typed as text (-l); without, it is one tmux key name ("Enter", "C-c"). */
  sendKeys(keys: string, opts?: { literal?: boolean }): Promise<void>;
  /** PID of the process running in the pane. */
  panePid(): Promise<number>;
  /** Whether the pane's command has exited (tmux reaped it), with its exit status, or the signal that killed it. */
  exited(): Promise<{ dead: boolean; status?: number; signal?: number }>;
  /** tmux kill-session; idempotent. */
  kill(): Promise<void>;
}

export interface TmuxOptions {
  cwd?: string;
  /**
   * Added to (or overriding) the environment the tmux server inherited from this process. TERM inside is
   * tmux-256color unless this sets it; TMUX and TMUX_PANE here are ignored (tmux sets its own).
   */
  env?: Record<string, string>;
  width?: number;
  height?: number;
}

interface Server {
  dir: string;
  socket: string;
  config: string;
}

let server: Server | undefined;
const live = new Set<string>();
let counter = 0;
let exitHookInstalled = false;

function ensureServerFiles(): Server {
  if (server) return server;
  const dir = mkdtempSync(path.join(os.tmpdir(), "ocr-tmux-"));
  const config = path.join(dir, "tmux.conf");
  // Read when the server starts, before the first pane's command runs: no race with a fast exit.
  writeFileSync(
    config,
    [
      "set -g remain-on-exit on",
      "set -g status off", // the whole window is the pane: screen() is exactly what the program drew
      "set -g history-limit 10000",
      "set -g default-terminal tmux-256color",
      "set -s escape-time 0",
      "",
    ].join("\n"),
  );
  server = { dir, socket: path.join(dir, "sock"), config };
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", () => {
      if (!server) return;
      try {
        execFileSync(TMUX_BIN, ["-S", server.socket, "kill-server"], { stdio: "ignore", timeout: 5_000 });
      } catch {
        /* no server */
      }
      rmSync(server.dir, { recursive: true, force: true });
    });
  }
  return server;
}

async function tmux(args: string[]): Promise<string> {
  const s = ensureServerFiles();
  try {
    const { stdout } = await execFileP(TMUX_BIN, ["-S", s.socket, "-f", s.config, ...args], { encoding: "utf8", timeout: 10_000 });
    return stdout;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === "ENOENT") throw new Error(`${TMUX_BIN} not found: apt-get install tmux`);
    throw new Error(`tmux ${args.join(" ")}: ${(e.stderr ?? "").trim() || e.message}`);
  }
}

function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

async function killServerIfIdle(): Promise<void> {
  if (live.size || !server) return;
  const s = server;
  server = undefined;
  try {
    await execFileP(TMUX_BIN, ["-S", s.socket, "kill-server"], { timeout: 5_000 });
  } catch {
    /* already gone */
  }
  rmSync(s.dir, { recursive: true, force: true });
}

export async function startTmux(command: string[], opts: TmuxOptions = {}): Promise<TmuxSession> {
  if (!command.length) throw new Error("startTmux: empty command");
  const name = `ocr${process.pid}-${++counter}`;
  // Exact-match target: "=name" never prefix-matches another session.
  const target = `=${name}:`;
  for (const k of Object.keys(opts.env ?? {})) {
    if (!k || k.includes("=")) throw new Error(`startTmux: bad environment variable name ${JSON.stringify(k)}`);
  }
  // The environment goes through a file, not tmux's command line: a tmux command is one message to the
  // server and is refused ("command too long") past about 16 KB, which a copy of process.env can reach.
  // sh runs the file, which execs env, which execs the command: the pane's pid is the command's.
  const s = ensureServerFiles();
  const script = path.join(s.dir, `${name}.sh`);
  // TMUX and TMUX_PANE in a copied environment describe the tmux the tests run in, not this one.
  const assignments = Object.entries(opts.env ?? {})
    .filter(([k]) => k !== "TMUX" && k !== "TMUX_PANE")
    .map(([k, v]) => shellQuote(`${k}=${v}`));
  writeFileSync(script, `exec env -- ${assignments.join(" ")} "$@"\n`);
  const argv = ["sh", script, ...command];
  live.add(name);
  try {
    await tmux([
      "new-session", "-d",
      "-s", name,
      "-x", String(opts.width ?? 120),
      "-y", String(opts.height ?? 40),
      ...(opts.cwd ? ["-c", opts.cwd] : []),
      "--",
      ...argv,
    ]);
  } catch (err) {
    live.delete(name);
    await killServerIfIdle();
    throw err;
  }

  let killed = false;
  const display = async (format: string) => (await tmux(["display-message", "-p", "-t", target, format])).trimEnd();

  return {
    name,
    screen: () => tmux(["capture-pane", "-p", "-t", target]),
    sendKeys: async (keys, o = {}) => {
      await tmux(["send-keys", "-t", target, ...(o.literal ? ["-l"] : []), "--", keys]);
    },
    panePid: async () => {
      const pid = Number(await display("#{pane_pid}"));
      if (!Number.isInteger(pid) || pid <= 0) throw new Error(`tmux reported no pane pid for ${name}`);
      return pid;
    },
    exited: async () => {
      const [dead, status, signal, serverPid] = (await display("#{pane_dead} #{pane_dead_status} #{pane_dead_signal} #{pid}")).split(" ");
      if (dead !== "1") return { dead: false };
      if (!status && !signal) {
        // The pty closed but tmux has not reaped the process. Debian's tmux is built with libutempter,
        // whose own SIGCHLD handler can swallow the signal, leaving the pane's process a zombie that tmux
        // never reaps (tmux/tmux#311, #4559). Nudge the server; tmux reaps with waitpid(WNOHANG), so a
        // spare SIGCHLD is harmless. Only a reaped process counts as exited.
        if (serverPid && Number(serverPid) > 0) {
          try {
            process.kill(Number(serverPid), "SIGCHLD");
          } catch {
            /* server gone */
          }
        }
        return { dead: false };
      }
      return {
        dead: true,
        ...(status ? { status: Number(status) } : {}),
        ...(signal ? { signal: Number(signal) } : {}),
      };
    },
    kill: async () => {
      if (killed) return;
      killed = true;
      try {
        await tmux(["kill-session", "-t", `=${name}`]);
      } catch {
        /* already gone */
      }
      live.delete(name);
      await killServerIfIdle();
    },
  };
}

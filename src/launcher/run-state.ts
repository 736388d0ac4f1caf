/**
 * What each running launcher on this machine is doing, for `status`, `sessions` and `cleanup`:
 * one 0600 JSON file per run in the user's state directory, removed when the run ends.
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";

export interface RunState {
  id: string;
  pid: number;
  name: string;
  mode: "local" | "relay";
  forward?: "socket" | "tcp";
  relay?: string;
  registryDir: string;
  localPort: number;
  username: string;
  password: string;
  cwd: string;
  logFile: string;
  startedAt: string;
  tunnel?: string;
  tunnelDetail?: string;
  sshPid?: number;
  nonce?: string;
  updatedAt: string;
}

export class RunStateStore {
  readonly dir: string;
  constructor(stateDir: string) {
    this.dir = path.join(stateDir, "runs");
  }

  async write(state: RunState): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const file = path.join(this.dir, `${state.id}.json`);
    // Unique per write: two writes of one run may overlap (a tunnel state change and a save).
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
    await fs.writeFile(tmp, JSON.stringify({ ...state, updatedAt: new Date().toISOString() }, null, 2), { mode: 0o600 });
    await fs.rename(tmp, file);
  }

  async remove(id: string): Promise<void> {
    await fs.rm(path.join(this.dir, `${id}.json`), { force: true });
  }

  async list(): Promise<RunState[]> {
    let files: string[];
    try {
      files = await fs.readdir(this.dir);
    } catch {
      return [];
    }
    const out: RunState[] = [];
    for (const f of files.filter((f) => f.endsWith(".json"))) {
      try {
        out.push(JSON.parse(await fs.readFile(path.join(this.dir, f), "utf8")) as RunState);
      } catch {
        /* a run being written; skip */
      }
    }
    return out.sort((a, b) => a.startedAt.localeCompare(b.startedAt));
  }
}

export function processAlive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Local mode (no RELAY_SSH_CMD): the registration goes straight into this machine's registry directory,
 * written the same careful way the relay script writes it: temp file + rename, 0600 in a 0700 directory,
 * removed on exit only if it is still ours.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import type { Registration } from "../shared/registration.js";
import { processAlive } from "./run-state.js";

export async function ensureLocalRegistry(dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await fs.access(dir, fs.constants?.W_OK ?? 2);
}

/** Whether another live launcher run holds `name` here. */
export async function nameTakenLocally(dir: string, name: string, ownId: string): Promise<boolean> {
  let text: string;
  try {
    text = await fs.readFile(path.join(dir, `${name}.json`), "utf8");
  } catch {
    return false;
  }
  try {
    const reg = JSON.parse(text) as Partial<Registration>;
    if (reg.id === ownId) return false;
    // The old launcher wrote no pid: treat its files as held (we cannot tell, and must not replace them).
    return reg.pid === undefined ? true : processAlive(reg.pid);
  } catch {
    return true; // unreadable: not ours to replace
  }
}

export async function writeLocalRegistration(dir: string, reg: Registration): Promise<void> {
  const tmp = path.join(dir, `.${reg.name}.${reg.nonce ?? process.pid}.tmp`);
  await fs.writeFile(tmp, `${JSON.stringify(reg)}\n`, { mode: 0o600 });
  await fs.rename(tmp, path.join(dir, `${reg.name}.json`));
}

/** Removes our registration; leaves it if another run has replaced it since. */
export async function removeLocalRegistration(dir: string, name: string, nonce: string): Promise<boolean> {
  const file = path.join(dir, `${name}.json`);
  try {
    const reg = JSON.parse(await fs.readFile(file, "utf8")) as Partial<Registration>;
    if (reg.nonce !== nonce) return false;
    await fs.unlink(file);
    return true;
  } catch {
    return false;
  }
}

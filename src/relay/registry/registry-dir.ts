/**
 * Safe file operations on the registry directory. The directory usually lives in /tmp, which every
 * local user can write to, so nothing here follows a symlink, reads a file it does not own, or deletes
 * anything but a regular file it read itself and that has not changed since.
 */
import { constants, promises as fs, type Stats } from "node:fs";
import net from "node:net";
import path from "node:path";
import { RegistrationSchema, TUNNEL_SOCKET_FILE, describeZodError, nameProblem, type Registration } from "../../shared/registration.js";

/** A registration is a few hundred bytes; anything far larger is not one. */
export const MAX_REGISTRATION_BYTES = 64 * 1024;

export class RegistryDirError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "RegistryDirError";
  }
}

/** Identity of a file version: a rewrite (new inode or new mtime or size) is a different version. */
export interface FileVersion {
  ino: number;
  mtimeMs: number;
  size: number;
}

export function versionOf(st: Stats): FileVersion {
  return { ino: st.ino, mtimeMs: st.mtimeMs, size: st.size };
}

export function sameVersion(a: FileVersion, b: FileVersion): boolean {
  return a.ino === b.ino && a.mtimeMs === b.mtimeMs && a.size === b.size;
}

const uid = typeof process.getuid === "function" ? process.getuid() : undefined;

/**
 * Creates the directory (0700) if it is missing. Refuses a directory that is a symlink or that another
 * user owns: whoever owns it decides which coding agents we would drive.
 */
export async function ensureRegistryDir(dir: string, owner?: { uid: number; gid: number }): Promise<{ uid: number; gid: number }> {
  if (!path.isAbsolute(dir)) throw new RegistryDirError(`RELAY_REGISTRY_DIR must be an absolute path, got "${dir}"`);
  const created = (await fs.mkdir(dir, { recursive: true, mode: 0o700 })) !== undefined;
  // Recreated by a root relay after a wipe: give it back to the account that owned it (the one the
  // tunnels log in as), or sshd could no longer bind their sockets in it.
  if (created && owner && uid === 0 && owner.uid !== 0) await fs.chown(dir, owner.uid, owner.gid);
  const st = await fs.lstat(dir);
  if (st.isSymbolicLink()) throw new RegistryDirError(`registry directory ${dir} is a symlink; point RELAY_REGISTRY_DIR at a real directory`);
  if (!st.isDirectory()) throw new RegistryDirError(`registry path ${dir} is not a directory`);
  if (uid !== undefined && uid !== 0 && st.uid !== uid) {
    throw new RegistryDirError(`registry directory ${dir} belongs to uid ${st.uid}, not to this user (uid ${uid}); remove it or set RELAY_REGISTRY_DIR to a directory you own`);
  }
  return { uid: st.uid, gid: st.gid };
}

export type ReadResult =
  | { ok: true; registration: Registration; version: FileVersion; ownerUid: number }
  | { ok: false; problem: string; /** May resolve itself: the file could still be being written. */ transient: boolean; version?: FileVersion };

/** The instance name a registry file name stands for, or undefined for files that are not registrations. */
export function nameFromFile(file: string): string | undefined {
  if (!file.endsWith(".json") || file.startsWith(".")) return undefined;
  return file.slice(0, -".json".length);
}

/** Reads and validates one registration file by its base name. Never throws for bad content. */
export async function readRegistration(dir: string, file: string): Promise<ReadResult> {
  const stem = nameFromFile(file);
  if (stem === undefined) return { ok: false, problem: "not a .json registration file", transient: false };
  const problem = nameProblem(stem);
  if (problem) return { ok: false, problem: `invalid file name: ${problem}`, transient: false };
  const full = path.join(dir, file);
  let handle: fs.FileHandle;
  try {
    // O_NOFOLLOW: a symlink fails to open (ELOOP) instead of leading us out of the directory.
    // O_NONBLOCK: a FIFO planted under a .json name cannot block the open.
    handle = await fs.open(full, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ELOOP") return { ok: false, problem: "is a symlink; registrations must be regular files", transient: false };
    if (code === "ENOENT") return { ok: false, problem: "disappeared", transient: true };
    return { ok: false, problem: `cannot be opened (${code ?? String(err)})`, transient: false };
  }
  try {
    const st = await handle.stat();
    const version = versionOf(st);
    if (!st.isFile()) return { ok: false, problem: "is not a regular file", transient: false, version };
    // Trusted writers: this user, and the registry directory's owner (a root relay serving tunnels that
    // log in as another account). Anyone else's file could route our calls into their own socket.
    if (uid !== undefined && st.uid !== uid) {
      const dirUid = (await fs.lstat(dir).catch(() => undefined))?.uid;
      if (st.uid !== dirUid) {
        return { ok: false, problem: `belongs to uid ${st.uid}, neither this user (uid ${uid}) nor the registry directory's owner (uid ${dirUid})`, transient: false, version };
      }
    }
    if (st.size > MAX_REGISTRATION_BYTES) return { ok: false, problem: `is larger than ${MAX_REGISTRATION_BYTES} bytes`, transient: false, version };
    const text = (await handle.readFile()).toString("utf8");
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      // A writer that does not rename atomically (the old launcher's `cat >`) leaves a partial file
      // for a moment: say so, and let the caller wait for the rest.
      return { ok: false, problem: `is not valid JSON (${(err as Error).message})`, transient: true, version };
    }
    const parsed = RegistrationSchema.safeParse(json);
    if (!parsed.success) return { ok: false, problem: describeZodError(parsed.error), transient: text.trim() === "", version };
    if (parsed.data.name !== stem) {
      return { ok: false, problem: `its name "${parsed.data.name}" does not match the file name; name the file ${parsed.data.name}.json`, transient: false, version };
    }
    return { ok: true, registration: parsed.data, version, ownerUid: st.uid };
  } finally {
    await handle.close();
  }
}

/**
 * Why the registration's socket may not be used, or undefined when it may. A registration may only
 * point at a socket its own owner owns: otherwise one user could route our calls into another user's
 * tunnel by writing a file.
 */
export async function socketProblem(socketPath: string, ownerUid: number): Promise<string | undefined> {
  let st: Stats;
  try {
    st = await fs.lstat(socketPath);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === "ENOENT" ? undefined : `socket ${socketPath} cannot be inspected (${code})`; // missing: health says offline
  }
  if (!st.isSocket()) return `socket ${socketPath} is not a Unix socket`;
  if (st.uid !== ownerUid && st.uid !== 0) return `socket ${socketPath} belongs to uid ${st.uid}, not to the registration's owner (uid ${ownerUid})`;
  return undefined;
}

/**
 * Deletes a registration file, but only if it is still the exact version we read: a launcher that has
 * just rewritten it (reconnected) must not lose its fresh registration to our stale judgement.
 * Returns whether the file was removed.
 */
export async function removeRegistration(dir: string, file: string, expected: FileVersion): Promise<boolean> {
  const full = path.join(dir, file);
  if (path.dirname(full) !== path.resolve(dir)) throw new RegistryDirError(`refusing to remove ${full}: outside ${dir}`);
  let st: Stats;
  try {
    st = await fs.lstat(full);
  } catch {
    return false;
  }
  if (!st.isFile() || !sameVersion(versionOf(st), expected)) return false;
  await fs.unlink(full);
  return true;
}

/** Removes a socket the registry owns (a dead tunnel's), only if it lies directly in the registry. */
export async function removeSocketInDir(dir: string, socketPath: string): Promise<boolean> {
  if (path.dirname(path.resolve(socketPath)) !== path.resolve(dir)) return false;
  try {
    const st = await fs.lstat(socketPath);
    if (!st.isSocket()) return false;
    await fs.unlink(socketPath);
    return true;
  } catch {
    return false;
  }
}

/** Whether anything listens on a Unix socket: "dead" only when the connect is refused. */
function probeSocket(socketPath: string, timeoutMs: number): Promise<"live" | "dead" | "unknown"> {
  return new Promise((resolve) => {
    const sock = net.connect(socketPath);
    const done = (r: "live" | "dead" | "unknown") => {
      sock.destroy();
      resolve(r);
    };
    sock.setTimeout(timeoutMs, () => done("unknown"));
    sock.once("connect", () => done("live"));
    sock.once("error", (err: NodeJS.ErrnoException) => done(err.code === "ECONNREFUSED" ? "dead" : "unknown"));
  });
}

/**
 * Removes tunnel sockets in the registry that no registration names and nothing listens on: left by
 * connections that died before their relay script could clean up (sshd does not remove the sockets it
 * bound). Only files named like a launcher's socket, owned by a trusted writer, older than `minAgeMs`,
 * and refusing connections; a live one (a launcher still waiting for its opencode) is never touched.
 * Returns the paths removed.
 */
export async function sweepDeadSockets(dir: string, inUse: ReadonlySet<string>, opts: { minAgeMs: number; probeTimeoutMs: number }): Promise<string[]> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return [];
  }
  const dirUid = (await fs.lstat(dir).catch(() => undefined))?.uid;
  const candidates = (
    await Promise.all(
      names.map(async (name) => {
        const full = path.join(dir, name);
        if (!TUNNEL_SOCKET_FILE.test(name) || inUse.has(full)) return undefined;
        const st = await fs.lstat(full).catch(() => undefined);
        if (!st?.isSocket() || Date.now() - st.mtimeMs < opts.minAgeMs) return undefined;
        if (uid !== undefined && st.uid !== uid && st.uid !== dirUid) return undefined;
        return full;
      }),
    )
  ).filter((c): c is string => c !== undefined);
  if (candidates.length === 0) return []; // the usual case: no registration file is read
  // Spare every socket a file on disk names now, loaded or not yet (a registration being written this
  // moment, or one we refused): never remove what a registration points at.
  const named = new Set<string>();
  await Promise.all(
    names.filter((n) => nameFromFile(n) !== undefined).map(async (n) => {
      const r = await readRegistration(dir, n);
      if (r.ok && r.registration.socket) named.add(path.resolve(r.registration.socket));
      else if (!r.ok) {
        // Unreadable or invalid: look for a socket field anyway, to stay on the safe side.
        // Only a small regular file: never a FIFO (would block) or a symlink (leads elsewhere).
        const st = await fs.lstat(path.join(dir, n)).catch(() => undefined);
        const text = st?.isFile() && st.size <= MAX_REGISTRATION_BYTES ? await fs.readFile(path.join(dir, n), "utf8").catch(() => "") : "";
        for (const m of text.matchAll(/"socket"\s*:\s*"([^"]+)"/g)) named.add(path.resolve(m[1]!));
      }
    }),
  );
  const removed: string[] = [];
  // Probed side by side: one socket that hangs must not delay the others.
  await Promise.all(
    candidates.map(async (full) => {
      if (named.has(full) || (await probeSocket(full, opts.probeTimeoutMs)) !== "dead") return;
      if (await removeSocketInDir(dir, full)) removed.push(full);
    }),
  );
  return removed;
}

/**
 * `opencode-connected relay-setup`: what a hardened relay needs so that a tunnel key can open its reverse
 * forward and register, and nothing else — no shell, no other command, no local forwards:
 *   1. an sshd_config fragment (a `Match User` block) for an Include file,
 *   2. the authorized_keys line for each machine's key (`restrict,port-forwarding,command="…"`),
 *   3. the registry directory (0700, owned by the tunnel user),
 *   4. the forced command: forcedCommandScript() from remote-script.ts, installed as a file.
 * Without --apply it only prints. With --apply FILE it writes 1 to FILE, installs 4 and creates 3; it
 * never overwrites a file whose content differs (unless --force) and never deletes anything. The key line
 * (2) is always left to the user: it goes into a file that may hold other keys.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { LauncherConfig } from "../config.js";
import { forcedCommandScript, isPlainWord } from "../remote-script.js";

export const KEY_PLACEHOLDER = "<your machine's public key>";
const SCRIPT_NAME = "opencode-relay-register.sh";
/** Linux sun_path limit, and what the launcher adds to the registry path: "/" + 40 + "-" + 16 + ".sock". */
const MAX_SOCKET_PATH = 107;
const SOCKET_SUFFIX = 1 + 40 + 1 + 16 + 5;

const USAGE = `Usage: opencode-connected relay-setup [--user NAME] [--registry DIR] [--key FILE|KEY]... [--script PATH]
                                      [--apply FILE [--force]]
Prints what a hardened relay needs (sshd settings, the authorized_keys line, the registry directory and
the forced-command script), so that a tunnel key can only tunnel and register.
  --user NAME      the tunnel user on the relay (default: the current user)
  --registry DIR   the registry directory (default: RELAY_REGISTRY_DIR, or /tmp/opencode-relay)
  --key FILE|KEY   a machine's public key, or a .pub file (repeatable; default: a placeholder)
  --script PATH    where the forced command is installed (default: next to the registry, ${SCRIPT_NAME})
  --apply FILE     write the sshd fragment to FILE, install the script (0755) and create the registry
                   (0700, owned by --user); never overwrites a different file unless --force`;

export class RelaySetupError extends Error {
  override name = "RelaySetupError";
}

export interface RelaySetupOptions {
  user: string;
  registry: string;
  script: string;
  /** Public key lines; empty = the placeholder. */
  keys: string[];
  apply?: string;
  force: boolean;
}

const KEY_LINE = /^(ssh-ed25519|ssh-rsa|ssh-dss|ecdsa-sha2-nistp(?:256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com)(?:-cert-v01@openssh\.com)?[ \t]+[A-Za-z0-9+/]+={0,3}(?:[ \t]+[^\x00-\x1f\x7f]*)?$/;

/** `--key`: a public key itself, or a file of them (a .pub file, or several keys one per line). */
export function readKeys(value: string, readFile: (p: string) => string = (p) => readFileSync(p, "utf8")): string[] {
  const v = value.trim();
  if (KEY_LINE.test(v)) return [v];
  let text: string;
  try {
    text = readFile(value);
  } catch (err) {
    throw new RelaySetupError(`--key ${value}: neither a public key ("ssh-ed25519 AAAA… comment") nor a readable file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  if (lines.length === 0) throw new RelaySetupError(`--key ${value}: the file holds no public key`);
  for (const l of lines) {
    if (!KEY_LINE.test(l)) throw new RelaySetupError(`--key ${value}: not a bare public key line (want the machine's .pub file, without options): ${l.slice(0, 60)}`);
  }
  return lines;
}

export function parseRelaySetupArgs(args: string[], defaults: { user: string; registry: string }, readFile?: (p: string) => string): RelaySetupOptions | "help" {
  let user = defaults.user;
  let registry = defaults.registry;
  let script: string | undefined;
  let apply: string | undefined;
  let force = false;
  const keys: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const value = (): string => {
      if (eq > 0) return arg.slice(eq + 1);
      const v = args[++i];
      if (v === undefined) throw new RelaySetupError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--help":
      case "-h":
        return "help";
      case "--user":
        user = value();
        break;
      case "--registry":
        registry = value();
        break;
      case "--key":
        keys.push(...readKeys(value(), readFile));
        break;
      case "--script":
        script = value();
        break;
      case "--apply":
        apply = value();
        break;
      case "--force":
        if (eq > 0) throw new RelaySetupError("--force takes no value");
        force = true;
        break;
      default:
        throw new RelaySetupError(`unknown argument "${arg}"`);
    }
  }
  if (!/^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/.test(user)) throw new RelaySetupError(`--user ${user}: not a user name`);
  const plain = (what: string, p: string) => {
    if (!p.startsWith("/")) throw new RelaySetupError(`${what} ${p}: must be an absolute path`);
    const normal = path.posix.normalize(p).replace(/(.)\/+$/, "$1");
    if (normal === "/") throw new RelaySetupError(`${what} ${p}: not the root directory`);
    // The launcher sends the registry as one shell word that the forced command reads back by splitting,
    // and sshd runs the script path through the user's shell: both must need no quoting.
    if (!isPlainWord(normal)) throw new RelaySetupError(`${what} ${p}: only letters, digits and _@%+=:,./- are allowed here (no spaces or quotes)`);
    return normal;
  };
  registry = plain("--registry", registry);
  script = plain("--script", script ?? path.posix.join(path.posix.dirname(registry), SCRIPT_NAME));
  if (script === registry || script.startsWith(`${registry}/`)) throw new RelaySetupError(`--script ${script}: not inside the registry, which tunnels write to`);
  return { user, registry, script, keys, force, ...(apply !== undefined ? { apply } : {}) };
}

/** The options part of the authorized_keys line: the same for every machine's key. */
export function authorizedKeysOptions(script: string): string {
  return `restrict,port-forwarding,command="${script}"`;
}

/** The sshd_config fragment: one Match block, for an Include file. */
export function sshdFragment(user: string, script: string): string {
  return `# opencode-relay: the user ${user} may only tunnel (generated by opencode-connected relay-setup).
# For an Include file, e.g. /etc/ssh/sshd_config.d/opencode-relay.conf; then: sshd -t && systemctl reload ssh
Match User ${user}
    # The forced command is set here AND on each key line (restrict,port-forwarding,command="..."):
    # here it binds every key of this user, also one added later without options (ssh-copy-id); on the
    # key line it still binds if this file is not included. Either way the client's command only reaches
    # the script as $SSH_ORIGINAL_COMMAND, which it checks and never runs. Administer this account with
    # sudo -u ${user}, not over ssh.
    ForceCommand ${script}
    AuthenticationMethods publickey
    # Reverse forwards only (the tunnels): no -L, -D or -W to anything on or beyond the relay.
    AllowStreamLocalForwarding remote
    # Needed only by machines with RELAY_FORWARD=tcp; set it to "no" if none uses that.
    AllowTcpForwarding remote
    PermitOpen none
    GatewayPorts no
    # Sockets are created 0600 and never bound over an existing file: with "yes" a tunnel key could
    # delete any file this user may delete (authorized_keys, other registrations) by forwarding a socket
    # onto its path. Each connection binds a fresh <name>-<nonce>.sock, so no tunnel needs the unlink.
    StreamLocalBindMask 0177
    StreamLocalBindUnlink no
    # Notice a vanished machine within ~45 s, so its registration is removed by its own cleanup.
    ClientAliveInterval 15
    ClientAliveCountMax 3
    X11Forwarding no
    AllowAgentForwarding no
    PermitTTY no
    PermitTunnel no
    PermitUserRC no
`;
}

export interface RelaySetupPlan {
  fragment: string;
  keyLines: string[];
  script: string;
}

export function relaySetupPlan(o: RelaySetupOptions): RelaySetupPlan {
  const opts = authorizedKeysOptions(o.script);
  return {
    fragment: sshdFragment(o.user, o.script),
    keyLines: (o.keys.length ? o.keys : [KEY_PLACEHOLDER]).map((k) => `${opts} ${k}`),
    script: forcedCommandScript(o.registry),
  };
}

/** Everything the relay needs, as text a person can follow (or paste). */
export function relaySetupText(o: RelaySetupOptions, plan: RelaySetupPlan = relaySetupPlan(o)): string {
  const home = o.user === "root" ? "/root" : `~${o.user}`;
  const eof = "OPENCODE_RELAY_EOF";
  const lines = [
    `# A hardened relay for the tunnel user ${o.user}, registry ${o.registry}: a tunnel key can open its`,
    "# reverse forward and register through the forced command, and nothing else (no shell, no other",
    "# command, no local forwards).",
    "",
    `# 1. sshd settings: ${o.apply ?? "/etc/ssh/sshd_config.d/opencode-relay.conf"}`,
    plan.fragment.trimEnd(),
    "",
    `# 2. ${home}/.ssh/authorized_keys: one line per machine (its ~/.ssh/id_ed25519.pub)`,
    ...plan.keyLines,
    "",
    `# 3. The registry (RELAY_REGISTRY_DIR for the machines and for opencode-mcp), owned by ${o.user}, mode 0700:`,
    `mkdir -m 700 ${o.registry} && chown ${o.user}: ${o.registry}`,
    "",
    `# 4. The forced command, owned by root, mode 0755 (not writable by ${o.user}):`,
    `cat > ${o.script} <<'${eof}'`,
    plan.script.trimEnd(),
    eof,
    `chmod 755 ${o.script}`,
    "",
    `# Check what sshd applies to ${o.user}:`,
    `#   sshd -T -C user=${o.user},host=localhost,addr=127.0.0.1 | grep -Ei '^(forcecommand|permittty|allow(tcp|streamlocal)forwarding|permitopen)'`,
  ];
  if (o.registry.length + SOCKET_SUFFIX > MAX_SOCKET_PATH) {
    lines.push(`# Note: with this registry, names longer than ${MAX_SOCKET_PATH - o.registry.length - 23} characters make socket paths too long (use a shorter registry path).`);
  }
  return lines.join("\n");
}

function userIds(user: string): { uid: number; gid: number } {
  try {
    const uid = Number(execFileSync("id", ["-u", user], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim());
    const gid = Number(execFileSync("id", ["-g", user], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim());
    return { uid, gid };
  } catch {
    throw new RelaySetupError(`no user ${user} on this machine (create it first, e.g. useradd --create-home --shell /bin/sh ${user})`);
  }
}

interface FileAction {
  file: string;
  content: string;
  mode: number;
  what: string;
  /** "create", "same" (nothing to do) or "replace" (differs; needs --force). */
  state: "create" | "same" | "replace";
}

function planFile(file: string, content: string, mode: number, what: string): FileAction {
  let st;
  try {
    st = lstatSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      if (!existsSync(path.dirname(file))) throw new RelaySetupError(`cannot write ${file}: ${path.dirname(file)} does not exist`);
      return { file, content, mode, what, state: "create" };
    }
    throw err;
  }
  if (!st.isFile()) throw new RelaySetupError(`${file} exists and is not a regular file: not touching it`);
  const same = readFileSync(file, "utf8") === content && (st.mode & 0o7777) === mode;
  return { file, content, mode, what, state: same ? "same" : "replace" };
}

function writeFile(a: FileAction): void {
  if (a.state === "create") {
    writeFileSync(a.file, a.content, { flag: "wx", mode: a.mode });
    chmodSync(a.file, a.mode); // the umask may have taken bits away
  } else {
    const tmp = path.join(path.dirname(a.file), `.${path.basename(a.file)}.${process.pid}.tmp`);
    writeFileSync(tmp, a.content, { flag: "wx", mode: a.mode });
    chmodSync(tmp, a.mode);
    renameSync(tmp, a.file);
  }
}

/** --apply: checks everything first, then writes; returns what it did, one line each. */
export function applyRelaySetup(o: RelaySetupOptions & { apply: string }, plan: RelaySetupPlan): string[] {
  const done: string[] = [];
  const root = process.getuid?.() === 0;
  const me = os.userInfo().username;
  const ids = o.user === me ? { uid: os.userInfo().uid, gid: os.userInfo().gid } : userIds(o.user);
  if (!root && o.user !== me) throw new RelaySetupError(`the registry must belong to ${o.user}: run relay-setup --apply as root (or as ${o.user})`);

  // The registry: created if missing, never changed if present (only checked).
  let registryState: "create" | "ok";
  let st;
  try {
    st = lstatSync(o.registry);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  if (!st) {
    if (!existsSync(path.dirname(o.registry))) throw new RelaySetupError(`cannot create ${o.registry}: ${path.dirname(o.registry)} does not exist`);
    registryState = "create";
  } else {
    if (!st.isDirectory()) throw new RelaySetupError(`${o.registry} exists and is not a directory (a symlink?): not touching it`);
    const problems = [(st.mode & 0o777) !== 0o700 ? `mode ${(st.mode & 0o777).toString(8)}, want 700` : "", st.uid !== ids.uid ? `owner uid ${st.uid}, want ${o.user}` : ""].filter(Boolean);
    if (problems.length) throw new RelaySetupError(`the registry ${o.registry} exists with ${problems.join(" and ")}: fix it by hand (chmod 700 / chown ${o.user}:), relay-setup does not change existing directories`);
    registryState = "ok";
  }
  // Whoever can change the script runs code as the tunnel user on every connection: its directory must
  // be writable only by its owner (not /tmp), and an existing copy must be ours.
  const scriptDir = path.dirname(o.script);
  const dirStat = existsSync(scriptDir) ? statSync(scriptDir) : undefined;
  if (dirStat && (dirStat.mode & 0o022) !== 0) {
    throw new RelaySetupError(`--script ${o.script}: ${scriptDir} is writable by others (mode ${(dirStat.mode & 0o7777).toString(8)}); choose a directory only root can write, e.g. --script /usr/local/lib/${SCRIPT_NAME}`);
  }
  const files = [planFile(o.script, plan.script, 0o755, "the forced command"), planFile(path.resolve(o.apply), plan.fragment, 0o644, "the sshd fragment")];
  for (const f of files) {
    if (f.state === "same" && lstatSync(f.file).uid !== process.geteuid?.()) f.state = "replace";
  }
  const conflicts = files.filter((f) => f.state === "replace");
  if (conflicts.length && !o.force) {
    throw new RelaySetupError(`${conflicts.map((f) => f.file).join(" and ")} already exist${conflicts.length === 1 ? "s" : ""} with other content, mode or owner: nothing written (--force replaces ${conflicts.length === 1 ? "it" : "them"})`);
  }

  if (registryState === "create") {
    mkdirSync(o.registry, { mode: 0o700 });
    chmodSync(o.registry, 0o700);
    if (root) chownSync(o.registry, ids.uid, ids.gid);
    done.push(`created ${o.registry} (the registry, mode 0700, owner ${o.user})`);
  } else {
    done.push(`kept ${o.registry} (the registry: already mode 0700, owner ${o.user})`);
  }
  // The script before the fragment that names it: sshd never points at a missing file.
  for (const f of files) {
    if (f.state === "same") {
      done.push(`kept ${f.file} (${f.what}: unchanged)`);
      continue;
    }
    writeFile(f);
    done.push(`${f.state === "create" ? "wrote" : "replaced"} ${f.file} (${f.what}, mode ${f.mode.toString(8).padStart(4, "0")})`);
  }
  if (statSync(o.script).uid === ids.uid && o.user !== "root") done.push(`warning: ${o.script} belongs to ${o.user}; install it as root so the tunnel user cannot change it`);
  return done;
}

export async function relaySetupCommand(config: LauncherConfig, out: (s: string) => void, args: string[], say: (s: string) => void = out): Promise<number> {
  let o: RelaySetupOptions | "help";
  try {
    o = parseRelaySetupArgs(args, { user: os.userInfo().username, registry: config.registryDir });
  } catch (err) {
    if (!(err instanceof RelaySetupError)) throw err;
    say(`opencode-connected relay-setup: ${err.message}`);
    say(USAGE);
    return 2;
  }
  if (o === "help") {
    out(USAGE);
    return 0;
  }
  const plan = relaySetupPlan(o);
  if (o.apply === undefined) {
    out(relaySetupText(o, plan));
    out("");
    out("# Nothing was written. --apply FILE writes 1 to FILE, installs 4 and creates 3 (2 is yours to add).");
    return 0;
  }
  let done: string[];
  try {
    done = applyRelaySetup({ ...o, apply: o.apply }, plan);
  } catch (err) {
    if (!(err instanceof RelaySetupError)) throw err;
    say(`opencode-connected relay-setup: ${err.message}`);
    return 1;
  }
  out(relaySetupText({ ...o, apply: path.resolve(o.apply) }, plan));
  out("");
  for (const line of done) out(`# ${line}`);
  out(`# Still to do: add the line in 2 to ${o.user === "root" ? "/root" : `~${o.user}`}/.ssh/authorized_keys, check that sshd includes ${path.resolve(o.apply)}, then sshd -t && systemctl reload ssh`);
  return 0;
}

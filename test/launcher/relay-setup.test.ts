/**
 * `opencode-connected relay-setup`: the printed setup, --apply, the forced command under the real `sh`,
 * and a real sshd configured with exactly what relay-setup generated: the launcher tunnels and registers
 * through it, while the same key gets no shell, no other command, no local forward, and no file outside
 * the registry.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import getPort from "get-port";
import { parseRelaySetupArgs, relaySetupCommand, relaySetupPlan, sshdFragment } from "../../src/launcher/commands/relay-setup.js";
import { loadLauncherConfig } from "../../src/launcher/config.js";
import { REMOTE_SCRIPT, remoteCommand } from "../../src/launcher/remote-script.js";
import { PACKAGE_ROOT } from "../../src/shared/package-info.js";
import { startRelay, type RelayClient } from "../support/mcp.js";
import { startModelServer, type ModelServer } from "../support/model-server.js";
import { OPENCODE_BIN, opencodeConfig, opencodeEnv } from "../support/opencode.js";
import { alive, descendants } from "../support/procs.js";
import { startSshd, type Sshd } from "../support/sshd.js";
import { tempDir } from "../support/temp.js";
import { waitFor } from "../support/wait.js";

const LAUNCHER = path.join(PACKAGE_ROOT, "dist", "src", "launcher", "main.js");
const ME = os.userInfo().username;
const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk1c3RhbmRpbmdpbnRoZXJhaW53YWl0aW5nZm9ydGhl me@laptop";
const nonce = () => randomBytes(8).toString("hex");

/** Every child a test started; killed (process group and all) after the file, whatever happened. */
const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

interface Run {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  lines: string[];
  exited: Promise<number | null>;
  kill(): Promise<void>;
}

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {}): Run {
  const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ["pipe", "pipe", "pipe"] });
  children.add(child);
  let stdout = "";
  let stderr = "";
  const lines: string[] = [];
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  createInterface({ input: child.stdout! }).on("line", (l) => lines.push(l));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  child.stdin!.on("error", () => {});
  if (opts.input !== undefined) child.stdin!.end(opts.input);
  const exited = new Promise<number | null>((resolve) => {
    child.on("error", () => resolve(127));
    child.on("exit", (code) => {
      children.delete(child);
      resolve(code);
    });
  });
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await exited;
  };
  return { child, stdout: () => stdout, stderr: () => stderr, lines, exited, kill };
}

/** Runs to the end, or fails (and kills) after timeoutMs. */
async function finish(r: Run, timeoutMs = 15_000): Promise<number | null> {
  const timer = setTimeout(() => r.child.kill("SIGKILL"), timeoutMs);
  try {
    return await r.exited;
  } finally {
    clearTimeout(timer);
  }
}

function cli(args: string[], env: NodeJS.ProcessEnv = process.env) {
  const r = spawnSync(process.execPath, [LAUNCHER, ...args], { encoding: "utf8", env, timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const config = (registry = "/tmp/opencode-relay") => loadLauncherConfig(["relay-setup"], { HOME: "/home/me", RELAY_REGISTRY_DIR: registry }, "/home/me/p", "relay");

async function printed(args: string[]): Promise<{ code: number; text: string }> {
  const out: string[] = [];
  const code = await relaySetupCommand(config(), (s) => out.push(s), args);
  return { code, text: out.join("\n") };
}

describe("relay-setup: what it prints", () => {
  test("the Match block, the authorized_keys line, the registry and the forced command", async () => {
    const { code, text } = await printed(["--user", "relay", "--registry", "/home/relay/opencode-relay", "--key", KEY]);
    assert.equal(code, 0);
    const lines = text.split("\n").map((l) => l.trim());
    const matchAt = lines.indexOf("Match User relay");
    assert.ok(matchAt >= 0, text);
    const block = lines.slice(matchAt + 1, lines.indexOf("", matchAt)).filter((l) => !l.startsWith("#"));
    for (const want of [
      "ForceCommand /home/relay/opencode-relay-register.sh",
      "AllowStreamLocalForwarding remote",
      "AllowTcpForwarding remote",
      "PermitOpen none",
      "StreamLocalBindUnlink no",
      "ClientAliveInterval 15",
      "ClientAliveCountMax 3",
      "X11Forwarding no",
      "AllowAgentForwarding no",
      "PermitTTY no",
    ]) {
      assert.ok(block.includes(want), `Match block has "${want}":\n${block.join("\n")}`);
    }
    assert.ok(lines.includes(`restrict,port-forwarding,command="/home/relay/opencode-relay-register.sh" ${KEY}`), text);
    assert.ok(lines.includes("mkdir -m 700 /home/relay/opencode-relay && chown relay: /home/relay/opencode-relay"), text);
    assert.ok(lines.includes("cat > /home/relay/opencode-relay-register.sh <<'OPENCODE_RELAY_EOF'"), text);
    assert.ok(text.includes("registry=/home/relay/opencode-relay\n"), "the registry is baked into the script");
    assert.ok(text.includes(REMOTE_SCRIPT.trim()), "the script carries the launcher's registration script unchanged");
    assert.match(text, /Nothing was written/);
  });

  test("defaults: the current user, RELAY_REGISTRY_DIR, a key placeholder, the script next to the registry", async () => {
    const out: string[] = [];
    assert.equal(await relaySetupCommand(config("/srv/relay/reg"), (s) => out.push(s), []), 0);
    const text = out.join("\n");
    assert.match(text, new RegExp(`^Match User ${ME}$`, "m"));
    assert.match(text, /^restrict,port-forwarding,command="\/srv\/relay\/opencode-relay-register\.sh" <your machine's public key>$/m);
    assert.match(text, /^registry=\/srv\/relay\/reg$/m);
  });

  test("its options reach it through the launcher's argv, and only for relay-setup", () => {
    const c = loadLauncherConfig(["relay-setup", "--user", "relay", "--apply=/x.conf", "--force"], { HOME: "/h" }, "/h", "h");
    assert.equal(c.subcommand, "relay-setup");
    assert.deepEqual(c.subcommandArgs, ["--user", "relay", "--apply=/x.conf", "--force"]);
    assert.throws(() => loadLauncherConfig(["--user", "relay"], { HOME: "/h" }, "/h", "h"), /unknown argument "--user"/);
    assert.throws(() => loadLauncherConfig(["status", "--force"], { HOME: "/h" }, "/h", "h"), /unknown argument "--force"/);
  });

  test("bad options are refused with a reason", () => {
    const d = { user: "relay", registry: "/home/relay/reg" };
    const bad: Array<[string[], RegExp]> = [
      [["--registry", "/tmp/a b"], /no spaces or quotes/],
      [["--registry", "relative"], /absolute/],
      [["--script", "/home/relay/reg/x.sh"], /not inside the registry/],
      [["--user", "a b"], /not a user name/],
      [["--key", "/nonexistent/key.pub"], /neither a public key/],
      [["--key"], /needs a value/],
      [["--frobnicate"], /unknown argument/],
    ];
    for (const [args, re] of bad) assert.throws(() => parseRelaySetupArgs(args, d), re, args.join(" "));
    assert.throws(() => parseRelaySetupArgs(["--key", "k.pub"], d, () => "from=\"*\" " + KEY), /not a bare public key/);
    const ok = parseRelaySetupArgs(["--registry", "/home/relay/reg/", "--key", "k.pub"], d, () => `${KEY}\n\n${KEY}2\n`);
    assert.ok(ok !== "help");
    assert.equal(ok.registry, "/home/relay/reg");
    assert.equal(relaySetupPlan(ok).keyLines.length, 2, "one line per key in the file");
  });
});

describe("relay-setup --apply", () => {
  const tmp = tempDir("ocr-setup-apply-");
  after(() => tmp.remove());

  test("creates the registry 0700, the script 0755 and the fragment; again: unchanged; never overwrites without --force", () => {
    const base = path.join(tmp.path, "a");
    mkdirSync(base, { mode: 0o755 });
    const registry = path.join(base, "registry");
    const conf = path.join(base, "opencode-relay.conf");
    const script = path.join(base, "opencode-relay-register.sh");
    const args = ["relay-setup", "--user", ME, "--registry", registry, "--apply", conf];
    const first = cli(args);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(statSync(registry).mode & 0o777, 0o700);
    assert.equal(statSync(script).mode & 0o777, 0o755);
    assert.equal(readFileSync(conf, "utf8"), sshdFragment(ME, script));
    assert.match(first.stdout, new RegExp(`# created ${registry} `));
    assert.match(first.stdout, new RegExp(`# wrote ${script} `));
    const again = cli(args);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /# kept .*unchanged/);

    writeFileSync(conf, "# my own edits\n");
    const refused = cli(args);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /already exists with other content.*--force/);
    assert.equal(readFileSync(conf, "utf8"), "# my own edits\n", "nothing overwritten");
    const forced = cli([...args, "--force"]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stdout, new RegExp(`# replaced ${conf} `));
    assert.equal(readFileSync(conf, "utf8"), sshdFragment(ME, script));
  });

  test("refuses a script directory others can write, and a registry with the wrong mode", () => {
    const base = path.join(tmp.path, "b");
    mkdirSync(base);
    chmodSync(base, 0o777);
    const r = cli(["relay-setup", "--registry", path.join(base, "registry"), "--apply", path.join(tmp.path, "b.conf")]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /is writable by others/);
    assert.deepEqual(readdirSync(base), [], "nothing written");

    const c = path.join(tmp.path, "c");
    mkdirSync(path.join(c, "registry"), { recursive: true, mode: 0o755 });
    chmodSync(path.join(c, "registry"), 0o755);
    const r2 = cli(["relay-setup", "--registry", path.join(c, "registry"), "--apply", path.join(c, "c.conf")]);
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, /mode 755, want 700/);
    assert.ok(!existsSync(path.join(c, "c.conf")));
  });
});

describe("the forced command under the real sh", () => {
  const tmp = tempDir("ocr-forced-");
  const registry = path.join(tmp.path, "registry");
  const script = path.join(tmp.path, "register.sh");
  after(() => tmp.remove());
  before(() => {
    const r = cli(["relay-setup", "--registry", registry, "--script", script, "--apply", path.join(tmp.path, "x.conf")]);
    assert.equal(r.code, 0, r.stderr);
  });

  const forced = (original: string | undefined) => {
    const env = { ...process.env };
    delete env.SSH_ORIGINAL_COMMAND;
    if (original !== undefined) env.SSH_ORIGINAL_COMMAND = original;
    return run(script, [], { env });
  };

  test("anything but the launcher's command with valid arguments is refused (exit 6), and nothing is written", async () => {
    const n = nonce();
    const id = randomUUID();
    const ok = { dir: registry, name: "desk", id, nonce: n };
    const cases: Array<[string | undefined, RegExp]> = [
      [undefined, /accepts only opencode-connected tunnels/],
      ["id; echo pwned", /accepts only opencode-connected tunnels/],
      ["bash -c 'echo pwned' opencode-relay x y z w v", /accepts only opencode-connected tunnels/],
      [remoteCommand(ok) + " extra", /accepts only opencode-connected tunnels/],
      [remoteCommand({ ...ok, dir: path.join(tmp.path, "evil") }), /the registry here is .*, not .*evil/],
      [remoteCommand({ ...ok, dir: `${registry}/..` }), /the registry here is/],
      [remoteCommand({ ...ok, name: "../x" }), /bad instance name \.\.\/x/],
      [remoteCommand({ ...ok, name: ".hidden" }), /bad instance name/],
      [remoteCommand({ ...ok, name: "a*" }), /bad instance name/],
      [remoteCommand({ ...ok, name: "x".repeat(129) }), /longer than 128/],
      [remoteCommand({ ...ok, name: "my desk" }), /INSTANCE_NAME and RELAY_REGISTRY_DIR may only contain/],
      [remoteCommand({ ...ok, id: "a;b" }), /accepts only|bad launcher id/],
      [remoteCommand({ ...ok, id: "x".repeat(65) }), /bad launcher id/],
      [remoteCommand({ ...ok, nonce: "0123" }), /bad nonce/],
      [remoteCommand({ ...ok, nonce: "0123456789ABCDEF" }), /bad nonce/],
      [remoteCommand({ ...ok, socket: "/etc/passwd" }), /bad socket path/],
      [remoteCommand({ ...ok, socket: `${registry}/other-${n}.sock` }), /bad socket path/],
      [remoteCommand({ ...ok, socket: path.join(tmp.path, `desk-${n}.sock`) }), /bad socket path/],
    ];
    for (const [original, re] of cases) {
      const r = forced(original);
      r.child.stdin!.end();
      assert.equal(await finish(r), 6, `exit 6 for ${original?.slice(-120)}: ${r.stdout()}${r.stderr()}`);
      assert.match(r.stdout(), /^error: refused: /);
      assert.match(r.stdout(), re);
      assert.doesNotMatch(r.stdout(), /pwned|uid=/);
    }
    assert.deepEqual(readdirSync(tmp.path).sort(), ["register.sh", "registry", "x.conf"], "nothing created beside the registry");
    assert.deepEqual(readdirSync(registry), [], "nothing created in it");
  });

  test("the launcher's own command registers; whatever script it carries is never run", async () => {
    const marker = path.join(tmp.path, "pwned");
    const n = nonce();
    const id = randomUUID();
    // The launcher's command with its script swapped for another: the forced command runs its own.
    const evil = remoteCommand({ dir: registry, name: "desk", id, nonce: n }).replace(/^sh -c '[^']*'/, `sh -c 'touch ${marker}'`);
    const r = forced(evil);
    await waitFor(() => r.lines.includes("ready"), { what: "ready" });
    const reg = { name: "desk", hostname: "h", port: 4242, cwd: "/", connectedAt: "now", id, nonce: n };
    r.child.stdin!.write(`${JSON.stringify(reg)}\n`);
    await waitFor(() => r.lines.includes("ok"), { what: "ok" });
    assert.equal(statSync(path.join(registry, "desk.json")).mode & 0o777, 0o600);
    assert.deepEqual(JSON.parse(readFileSync(path.join(registry, "desk.json"), "utf8")), reg);
    r.child.stdin!.end();
    assert.equal(await finish(r), 0);
    assert.ok(!existsSync(path.join(registry, "desk.json")), "removed at the end");
    assert.ok(!existsSync(marker), "the client's script never ran");
  });
});

describe("a real sshd configured by relay-setup", { timeout: 300_000 }, () => {
  const tmp = tempDir("ocr-hardened-");
  const registry = path.join(tmp.path, "registry");
  const script = path.join(tmp.path, "opencode-relay-register.sh");
  const conf = path.join(tmp.path, "opencode-relay.conf");
  let model: ModelServer;
  let sshd: Sshd;
  let relay: RelayClient;
  let ssh: string[];

  before(async () => {
    const setup = cli(["relay-setup", "--user", ME, "--registry", registry, "--script", script, "--apply", conf]);
    assert.equal(setup.code, 0, setup.stderr);
    // Exactly what relay-setup generated: the fragment it wrote, the options of the key line it printed.
    const keyLine = setup.stdout.split("\n").find((l) => l.startsWith("restrict,"));
    assert.ok(keyLine, setup.stdout);
    const authorizedKeysOptions = keyLine.slice(0, keyLine.lastIndexOf(" <your machine's public key>"));
    assert.equal(authorizedKeysOptions, `restrict,port-forwarding,command="${script}"`);
    // Plus the sftp subsystem every Debian sshd has, to show that a subsystem request is refused too.
    const sftp = existsSync("/usr/lib/openssh/sftp-server") ? "/usr/lib/openssh/sftp-server" : "internal-sftp";
    sshd = await startSshd({ extraConfig: `Subsystem sftp ${sftp}\n${readFileSync(conf, "utf8")}`, authorizedKeysOptions });
    ssh = sshd.sshCmd.split(" ");
    model = await startModelServer();
    relay = await startRelay({ RELAY_REGISTRY_DIR: registry, HEALTH_INTERVAL_MS: "300", HEALTH_CHECK_TIMEOUT_MS: "1000", SEND_TIMEOUT_MS: "60000" });
  });

  after(async () => {
    for (const c of children) c.kill("SIGKILL");
    await relay?.close();
    await sshd?.close();
    await model?.close();
    tmp.remove();
  });

  const sshRun = (args: string[], input = "") => run(ssh[0]!, [...ssh.slice(1), ...args], { input });

  function launch(name: string, extra: Record<string, string> = {}) {
    const root = path.join(tmp.path, name);
    const cwd = path.join(root, "project");
    mkdirSync(cwd, { recursive: true });
    writeFileSync(path.join(cwd, "opencode.json"), JSON.stringify(opencodeConfig(model.url)));
    const env = opencodeEnv(root, { RELAY_SSH_CMD: sshd.sshCmd, RELAY_REGISTRY_DIR: registry, INSTANCE_NAME: name, OPENCODE_BIN, LOG_LEVEL: "debug", ...extra });
    return run(process.execPath, [LAUNCHER, "--serve"], { env, cwd });
  }

  const registration = (name: string): { socket?: string; port?: number; version?: string } | undefined => {
    try {
      return JSON.parse(readFileSync(path.join(registry, `${name}.json`), "utf8")) as { socket?: string; port?: number; version?: string };
    } catch {
      return undefined;
    }
  };

  /** The registration once the launcher has written it with opencode's version (opencode answers). */
  const readyRegistration = (name: string) => {
    const r = registration(name);
    return r?.version ? r : undefined;
  };

  const sendOk = (instance: string, message: string) =>
    waitFor(
      async () => {
        const r = await relay.call("send", { instance, message });
        return !r.isError && r;
      },
      { timeoutMs: 20_000, what: `send to ${instance} to succeed` },
    );

  test("the launcher tunnels and registers through it; send works; SIGTERM removes the registration", async () => {
    const l = launch("hardened");
    try {
      const reg = await waitFor(() => readyRegistration("hardened"), { timeoutMs: 30_000, what: `the registration (launcher said: ${l.stderr()})` });
      assert.match(String(reg.socket), new RegExp(`^${registry}/hardened-[0-9a-f]{16}\\.sock$`));
      assert.ok(lstatSync(String(reg.socket)).isSocket());
      assert.equal((await sendOk("hardened", "through the hardened relay")).text, "Reply to: through the hardened relay");
      const pids = [l.child.pid!, ...descendants(l.child.pid!)];
      l.child.kill("SIGTERM");
      assert.equal(await finish(l, 20_000), 128 + 15);
      await waitFor(() => pids.every((p) => !alive(p)), { what: "the launcher's processes to exit" });
      await waitFor(() => !registration("hardened"), { what: "the registration to be removed" });
      assert.deepEqual(readdirSync(registry).filter((f) => f.startsWith("hardened")), []);
    } finally {
      await l.kill();
    }
  });

  test("a tcp forward works too (the empty socket argument)", async () => {
    const l = launch("hardened-tcp", { RELAY_FORWARD: "tcp" });
    try {
      const reg = await waitFor(() => readyRegistration("hardened-tcp"), { timeoutMs: 30_000, what: `the tcp registration (launcher said: ${l.stderr()})` });
      assert.ok(reg.port && !reg.socket);
      assert.equal((await sendOk("hardened-tcp", "over tcp")).text, "Reply to: over tcp");
    } finally {
      await l.kill();
    }
    await waitFor(() => !registration("hardened-tcp"), { what: "the tcp registration to be removed" });
  });

  test("a name the forced command refuses stops the launcher at once, with the relay's reason", async () => {
    const l = launch("my desk");
    assert.equal(await finish(l, 30_000), 1);
    assert.match(l.stderr(), /cannot connect to the relay: the relay says: refused: .*INSTANCE_NAME/);
  });

  test("the key gets no shell and runs no other command", async () => {
    for (const args of [["-T", "id; echo pwned"], ["-T"], ["-tt"], ["-tt", "id; echo pwned"], ["-T", "-s", "sftp"]]) {
      const r = sshRun(args, "id; echo pwned\nexit 0\n");
      const code = await finish(r);
      const all = r.stdout() + r.stderr();
      assert.doesNotMatch(all, /pwned\r?\n|uid=\d/, `ssh ${args.join(" ")}: ${all}`);
      if (args.includes("-tt")) {
        // PermitTTY no: the PTY request fails, and with -tt ssh gives up the session (or, if it went on,
        // the forced command would refuse it as below).
        assert.match(r.stderr(), /PTY allocation request failed/);
        assert.notEqual(code, 0);
        if (code !== 255) assert.match(r.stdout(), /^error: refused: /m);
      } else {
        assert.equal(code, 6, `ssh ${args.join(" ")}: ${all}`);
        assert.match(r.stdout(), /^error: refused: this relay accepts only opencode-connected tunnels/m);
      }
    }
  });

  test("no local forwards: -L and -W cannot reach a port on the relay", async () => {
    let reached = 0;
    const echo = net.createServer((s) => {
      reached++;
      s.pipe(s);
    });
    await new Promise<void>((r) => echo.listen(0, "127.0.0.1", () => r()));
    const port = (echo.address() as net.AddressInfo).port;
    const lport = await getPort({ host: "127.0.0.1" });
    const fwd = sshRun(["-N", "-o", "ExitOnForwardFailure=yes", "-L", `${lport}:127.0.0.1:${port}`]);
    try {
      // ssh listens on lport itself; the channel it opens to the relay for each connection is refused.
      const got = await waitFor(
        () =>
          new Promise<{ data: string } | undefined>((resolve) => {
            const c = net.connect(lport, "127.0.0.1");
            let data = "";
            c.on("connect", () => c.write("ping\n"));
            c.on("data", (d: Buffer) => (data += d.toString()));
            c.on("error", () => resolve(undefined));
            c.on("close", (hadError) => resolve(hadError && !data ? undefined : { data }));
            c.setTimeout(5_000, () => {
              c.destroy();
              resolve({ data: `${data}(still open after 5 s)` });
            });
          }),
        { timeoutMs: 15_000, what: "a connection to ssh's -L listener" },
      );
      assert.equal(got.data, "", "nothing came back through the forward");
      await waitFor(() => /administratively prohibited/.test(fwd.stderr()), { what: `ssh to log the refusal (stderr: ${fwd.stderr()})` });

      const w = sshRun(["-W", `127.0.0.1:${port}`], "ping\n");
      assert.equal(await finish(w), 255);
      assert.match(w.stderr(), /administratively prohibited|open failed/);
      assert.equal(w.stdout(), "");
      assert.equal(reached, 0, "the echo server was never reached");
    } finally {
      await fwd.kill();
      await new Promise<void>((r) => echo.close(() => r()));
    }
  });

  test("crafted commands are refused and write nothing outside the registry; a socket cannot replace a file", async () => {
    const evil = path.join(tmp.path, "evil");
    const n = nonce();
    const id = randomUUID();
    for (const cmd of [
      remoteCommand({ dir: evil, name: "x", id, nonce: n }),
      remoteCommand({ dir: registry, name: "../x", id, nonce: n }),
      remoteCommand({ dir: registry, name: "x", id, nonce: n, socket: path.join(tmp.path, `x-${n}.sock`) }),
    ]) {
      const r = sshRun(["-T", cmd]);
      assert.equal(await finish(r), 6, r.stdout() + r.stderr());
      assert.match(r.stdout(), /^error: refused: /);
    }
    assert.ok(!existsSync(evil), "no directory created outside the registry");
    assert.ok(!existsSync(path.join(tmp.path, "x.json")), "no registration written above the registry");

    // The client's own script never runs, even in an otherwise valid command: ours registers instead.
    const marker = path.join(tmp.path, "pwned");
    const swapped = remoteCommand({ dir: registry, name: "swapped", id, nonce: n }).replace(/^sh -c '[^']*'/, `sh -c 'touch ${marker}'`);
    const s = sshRun(["-T", swapped]);
    await waitFor(() => s.lines.includes("ready"), { what: `ready (ssh said: ${s.stderr()})` });
    s.child.stdin!.end();
    assert.equal(await finish(s), 0);
    assert.ok(!existsSync(marker), "the client's script never ran");

    // StreamLocalBindUnlink no: a forward cannot unlink an existing file to put its socket there.
    const victim = path.join(tmp.path, "victim.txt");
    writeFileSync(victim, "precious\n");
    const f = sshRun(["-N", "-o", "ExitOnForwardFailure=yes", "-R", `${victim}:127.0.0.1:1`]);
    assert.equal(await finish(f), 255);
    assert.match(f.stderr(), /remote port forwarding failed/);
    assert.equal(readFileSync(victim, "utf8"), "precious\n");
  });
});

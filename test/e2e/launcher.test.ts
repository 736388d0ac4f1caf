/**
 * The launcher end to end, on real parts: OpenSSH's sshd on 127.0.0.1 as the relay, `opencode-connected`
 * (built) starting the real opencode (the TUI under tmux, or `--serve`), the built `opencode-mcp` over
 * stdio reading the relay's registry, and the scripted model server standing in for the LLM.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { PACKAGE_ROOT } from "../../src/shared/package-info.js";
import { startRelay, type RelayClient } from "../support/mcp.js";
import { startModelServer, type ModelServer } from "../support/model-server.js";
import { launcherWorkspace, type LauncherWorkspace } from "../support/launcher-workspace.js";
import { alive, descendants } from "../support/procs.js";
import { startSshd, type Sshd } from "../support/sshd.js";
import { tempDir } from "../support/temp.js";
import { startTmux } from "../support/tmux.js";
import { waitFor } from "../support/wait.js";

const LAUNCHER = path.join(PACKAGE_ROOT, "dist", "src", "launcher", "main.js");

describe("opencode-connected end to end", { timeout: 600_000 }, () => {
  let model: ModelServer;
  let sshd: Sshd;
  let relay: RelayClient;
  const tmp = tempDir("ocr-launcher-");
  const registry = path.join(tmp.path, "registry");
  const stops: Array<() => Promise<void>> = [];

  before(async () => {
    model = await startModelServer();
    sshd = await startSshd();
    mkdirSync(registry, { mode: 0o700 });
    relay = await startRelay({ RELAY_REGISTRY_DIR: registry, HEALTH_INTERVAL_MS: "300", HEALTH_CHECK_TIMEOUT_MS: "1000", SEND_TIMEOUT_MS: "60000" });
  });

  after(async () => {
    for (const s of stops.reverse()) await s().catch(() => {});
    await relay?.close();
    await sshd?.close();
    await model?.close();
    tmp.remove();
  });

  /** A project folder and environment for one launcher run; state and opencode data kept apart. */
  function workspace(name: string, extra: Record<string, string> = {}) {
    return launcherWorkspace({ base: tmp.path, name, modelUrl: model.url, sshCmd: sshd.sshCmd, registry, extra });
  }

  /** `opencode-connected --serve`: the same launcher without a terminal. */
  function launchServe(ws: LauncherWorkspace, args: string[] = ["--serve"]) {
    const child = spawn(process.execPath, [LAUNCHER, ...args], { cwd: ws.cwd, env: ws.env, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    child.stdout!.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
    const stop = async () => {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
    };
    stops.push(stop);
    return { child, exited, stderr: () => stderr, stop };
  }

  interface Reg {
    socket?: string;
    port?: number;
    localPort?: number;
    nonce?: string;
    version?: string;
    auth?: { password?: string };
  }

  function registration(name: string): Reg | undefined {
    try {
      return JSON.parse(readFileSync(path.join(registry, `${name}.json`), "utf8")) as Reg;
    } catch {
      return undefined;
    }
  }

  /** Waits until `name` is registered on the relay and `ready` holds for its registration. */
  function registered(name: string, ready: (r: Reg) => unknown, what: string): Promise<Reg> {
    return waitFor(() => {
      const r = registration(name);
      return r && ready(r) ? r : undefined;
    }, { timeoutMs: 30_000, what });
  }

  async function sendOk(instance: string, message: string, extra: Record<string, unknown> = {}) {
    return waitFor(
      async () => {
        const r = await relay.call("send", { instance, message, ...extra });
        return !r.isError && r;
      },
      { timeoutMs: 20_000, what: `send to ${instance} to succeed` },
    );
  }

  async function assertNothingLeft(pids: number[], name: string) {
    await waitFor(() => pids.every((p) => !alive(p)), { timeoutMs: 10_000, what: `processes ${pids.join(",")} to exit` });
    await waitFor(() => !registration(name), { timeoutMs: 10_000, what: `${name}'s registration to be removed` });
    assert.deepEqual(readdirSync(registry).filter((f) => f.startsWith(name) && f.endsWith(".sock")), [], "the tunnel's socket is gone");
  }

  test("TUI: registers through a Unix-socket tunnel; send from the relay shows in the TUI; quitting removes everything", async () => {
    const ws = workspace("tui-laptop");
    const tui = await startTmux([process.execPath, LAUNCHER], { cwd: ws.cwd, env: ws.env, width: 120, height: 40 });
    stops.push(() => tui.kill());
    const reg = await registered("tui-laptop", (r) => r.socket, "the registration on the relay");
    assert.match(String(reg.socket), new RegExp(`^${registry}/tui-laptop-[0-9a-f]+\\.sock$`));
    assert.equal(reg.port, undefined);
    assert.ok(reg.auth?.password, "credentials registered");

    // The person at the laptop starts a conversation; the relay then continues it.
    await waitFor(async () => /Ask anything/.test(await tui.screen()), { timeoutMs: 30_000, what: "the TUI prompt" });
    await tui.sendKeys("hi from the laptop", { literal: true });
    await tui.sendKeys("Enter");
    await waitFor(async () => /Reply to: hi from the laptop/.test(await tui.screen()), { timeoutMs: 20_000, what: "the TUI's own turn" });
    const r = await sendOk("tui-laptop", "hello from the relay");
    assert.equal(r.text, "Reply to: hello from the relay");
    await waitFor(async () => /Reply to: hello from the relay/.test(await tui.screen()), { timeoutMs: 10_000, what: "the relay's turn on the TUI screen" });

    const launcherPid = await tui.panePid();
    const tree = [launcherPid, ...descendants(launcherPid)];
    assert.ok(tree.length >= 3, `launcher, opencode and ssh running: ${tree.join(",")}`);
    await tui.sendKeys("/exit", { literal: true });
    // The command autocomplete may still be opening when a first Enter arrives and swallow it: press
    // Enter until the TUI is gone.
    await waitFor(
      async () => {
        if ((await tui.exited()).dead) return true;
        await tui.sendKeys("Enter");
        return false;
      },
      { timeoutMs: 15_000, intervalMs: 500, what: "the launcher to exit with the TUI" },
    );
    assert.equal((await tui.exited()).status ?? 0, 0);
    await assertNothingLeft(tree, "tui-laptop");
  });

  test("TCP forward: the relay gets a loopback port and send works", async () => {
    const ws = workspace("tcp-desk", { RELAY_FORWARD: "tcp" });
    const l = launchServe(ws);
    const reg = await registered("tcp-desk", (r) => r.port, "the TCP registration");
    assert.equal(reg.socket, undefined);
    assert.notEqual(reg.port, reg.localPort, "the relay port is the tunnel's, not opencode's");
    assert.equal((await sendOk("tcp-desk", "over tcp")).text, "Reply to: over tcp");
    await l.stop();
    await waitFor(() => !registration("tcp-desk"), { what: "removal" });
  });

  test("the relay drops the connection: the tunnel comes back under the same name and send works again", async () => {
    const ws = workspace("flaky");
    const l = launchServe(ws);
    const first = await registered("flaky", (r) => r.socket, "registration");
    await sendOk("flaky", "before the drop");
    sshd.dropConnections();
    const second = await registered("flaky", (r) => r.nonce !== first.nonce && r.socket, "a new registration after the drop");
    assert.notEqual(second.socket, first.socket, "a fresh socket path per connection");
    assert.equal((await sendOk("flaky", "after the drop")).text, "Reply to: after the drop");
    assert.ok(!existsSync(String(first.socket)), "the old connection's socket was removed");
    const pids = [l.child.pid!, ...descendants(l.child.pid!)];
    await l.stop();
    await assertNothingLeft(pids, "flaky");
  });

  test("SIGTERM to the launcher removes the registration and leaves no process", async () => {
    const ws = workspace("term-me");
    const l = launchServe(ws);
    await registered("term-me", (r) => r.version, "registration");
    const pids = [l.child.pid!, ...descendants(l.child.pid!)];
    l.child.kill("SIGTERM");
    const code = await l.exited;
    assert.equal(code, 128 + 15, "exits with opencode's status (killed by SIGTERM)");
    await assertNothingLeft(pids, "term-me");
    // Nor a run-state file that would make `status` show a dead run (nor its temp files).
    const runs = path.join(ws.root, "xdg-state", "opencode-relay", "runs");
    assert.deepEqual(existsSync(runs) ? readdirSync(runs) : [], [], "no run state left");
  });

  test("SIGTERM while the tunnel is still connecting also cleans up and exits with the signal's status", async () => {
    const ws = workspace("term-early");
    const l = launchServe(ws);
    // As soon as the launcher has said anything or spawned anything, stop it.
    await waitFor(() => l.stderr().length > 0 || descendants(l.child.pid!).length > 0, { timeoutMs: 10_000, what: "the launcher to start working" });
    const pids = [l.child.pid!, ...descendants(l.child.pid!)];
    l.child.kill("SIGTERM");
    assert.equal(await l.exited, 128 + 15);
    await assertNothingLeft([...pids, ...pids.flatMap((p) => descendants(p))], "term-early");
  });

  test("a bad key fails fast, before opencode starts, with one line saying what to fix", async () => {
    const ws = workspace("badkey", { RELAY_SSH_CMD: sshd.badKeySshCmd });
    const l = launchServe(ws);
    assert.equal(await l.exited, 1);
    assert.match(l.stderr(), /opencode-connected: cannot connect to the relay: SSH authentication to the relay failed .*RELAY_SSH_CMD/);
    assert.equal(l.stderr().trim().split("\n").length, 1, "one line");
    assert.ok(!registration("badkey"));
  });

  test("a second launcher with the same name gets a distinct one and says so", async () => {
    const a = launchServe(workspace("twin"));
    await registered("twin", (r) => r.version, "the first twin");
    const wsB = workspace("twin-b", { INSTANCE_NAME: "twin" });
    const b = launchServe(wsB);
    await registered("twin-2", (r) => r.version, "the second twin as twin-2");
    assert.match(b.stderr(), /"twin" is in use on the relay by another running launcher; using "twin-2"/);
    assert.equal((await sendOk("twin-2", "which twin?", { new_session: true })).text, "Reply to: which twin?");
    await Promise.all([a.stop(), b.stop()]);
  });

  test("local mode: no RELAY_SSH_CMD writes the local registry, and status/sessions report it", async () => {
    const ws = workspace("local-only", { RELAY_SSH_CMD: "" });
    const l = launchServe(ws);
    const reg = await registered("local-only", (r) => r.version, "local registration");
    assert.equal(reg.port, reg.localPort);
    assert.equal((await sendOk("local-only", "local hello")).text, "Reply to: local hello");
    const status = spawn(process.execPath, [LAUNCHER, "status"], { cwd: ws.cwd, env: ws.env });
    let out = "";
    status.stdout.on("data", (d: Buffer) => (out += d.toString()));
    await new Promise((r) => status.on("exit", r));
    assert.match(out, /local-only\s+pid \d+\s+port \d+\s+local registry/);
    assert.match(out, /Registrations in .*: .*local-only/);
    await l.stop();
    await waitFor(() => !registration("local-only"), { what: "removal" });
  });
});


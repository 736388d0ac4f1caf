/** The test harnesses themselves: a real sshd on loopback, and a program under tmux. */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { startSshd, type Sshd } from "./sshd.js";
import { startTmux } from "./tmux.js";
import { closedPort } from "./socket-forward.js";
import { waitFor } from "./wait.js";

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function words(cmd: string): string[] {
  return cmd.split(" ").filter(Boolean);
}

function run(cmd: string[], timeoutMs = 15_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${cmd.join(" ")} did not finish in ${timeoutMs} ms; stderr: ${stderr}`));
    }, timeoutMs);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** A long-running ssh with its output collected and its exit awaitable. */
function background(cmd: string[]): { child: ChildProcess; stderr(): string; exit: Promise<number | null> } {
  const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  child.stdout!.resume();
  const exit = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  return { child, stderr: () => stderr, exit };
}

let sshd: Sshd;
const strays: ChildProcess[] = [];

before(async () => {
  sshd = await startSshd();
});

after(async () => {
  for (const c of strays) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  await sshd?.close();
});

test("sshd: the authorized key runs a command", async () => {
  const res = await run([...words(sshd.sshCmd), "echo", "hello"]);
  assert.equal(res.code, 0, res.stderr);
  assert.equal(res.stdout, "hello\n");
  assert.match(sshd.log(), /Accepted publickey for \S+ from 127\.0\.0\.1/);
});

test("sshd: a key that is not authorized fails fast with Permission denied", async () => {
  const started = Date.now();
  const res = await run([...words(sshd.badKeySshCmd), "true"]);
  assert.equal(res.code, 255);
  assert.match(res.stderr, /Permission denied/);
  assert.ok(Date.now() - started < 10_000);
});

test("sshd: a remote forward is allocated; dropConnections ends the ssh", async () => {
  const target = await closedPort();
  const ssh = background([...words(sshd.sshCmd), "-N", "-T", "-o", "ExitOnForwardFailure=yes", "-R", `0:127.0.0.1:${target}`]);
  strays.push(ssh.child);
  const m = await waitFor(() => /Allocated port (\d+) for remote forward/.exec(ssh.stderr()), { timeoutMs: 10_000, what: `"Allocated port" from ssh (stderr so far: ${JSON.stringify(ssh.stderr())})` });
  assert.ok(Number(m[1]) > 0);
  const sessions = await waitFor(() => (sshd.sessionPids().length ? sshd.sessionPids() : undefined), { what: "an sshd session process" });
  assert.ok(sessions.length >= 1);

  sshd.dropConnections();
  const code = await ssh.exit;
  assert.equal(code, 255, ssh.stderr());
  await waitFor(() => sshd.sessionPids().length === 0, { what: "sshd session processes to be gone" });
  assert.ok(sshd.listenerPid(), "the listener keeps running");
  const again = await run([...words(sshd.sshCmd), "echo", "still"]);
  assert.equal(again.stdout, "still\n", again.stderr);
});

test("sshd: stop refuses connections; restart serves again on the same port", async () => {
  const port = sshd.port;
  await sshd.stop();
  assert.equal(sshd.listenerPid(), undefined);
  const refused = await run([...words(sshd.sshCmd), "true"]);
  assert.equal(refused.code, 255);
  assert.match(refused.stderr, /Connection refused/);

  await sshd.restart();
  assert.equal(sshd.port, port);
  const res = await run([...words(sshd.sshCmd), "echo", "back"]);
  assert.equal(res.code, 0, res.stderr);
  assert.equal(res.stdout, "back\n");
});

test("sshd: extraConfig overrides the defaults (sshd keeps the first value it reads)", async () => {
  const strict = await startSshd({ extraConfig: "AllowTcpForwarding no" });
  try {
    const res = await run([...words(strict.sshCmd), "-N", "-T", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9"]);
    assert.equal(res.code, 255);
    assert.match(res.stderr, /remote port forwarding failed/);
  } finally {
    await strict.close();
  }
});

test("tmux: a program under a terminal reads keys and its exit status is kept", async () => {
  const t = await startTmux(["sh", "-c", 'echo ready; echo "term=$TERM tty=$(tty) v=$V"; read x; echo got:$x; exit 3'], { env: { V: "a b;$c'd\"e" }, cwd: "/" });
  try {
    const screen = await waitFor(async () => {
      const text = await t.screen();
      return text.includes("ready") && text.includes("v=") ? text : undefined;
    }, { what: "ready on screen" });
    assert.match(screen, /tty=\/dev\/pts\/\d+/);
    assert.ok(screen.includes(`v=a b;$c'd"e`), screen);
    const pid = await t.panePid();
    assert.equal(readFileSync(`/proc/${pid}/comm`, "utf8").trim(), "sh", "the pane's pid is the command's");
    assert.deepEqual(await t.exited(), { dead: false });

    await t.sendKeys("abc", { literal: true });
    await t.sendKeys("Enter");
    await waitFor(async () => (await t.screen()).includes("got:abc"), { what: "got:abc on screen" });
    const exited = await waitFor(async () => {
      const e = await t.exited();
      return e.dead ? e : undefined;
    }, { what: "the pane's command to exit" });
    assert.deepEqual(exited, { dead: true, status: 3 });
  } finally {
    await t.kill();
    await t.kill();
  }
});

/**
 * The Tunnel class against the real OpenSSH server: registration through the one connection, cleanup
 * on close, and the sleep/resume path (a wall-clock jump restarts the tunnel at once).
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { after, before, test } from "node:test";
import { splitShellWords } from "../../src/launcher/shell-words.js";
import { Tunnel } from "../../src/launcher/tunnel.js";
import type { Sleep } from "../../src/shared/retry.js";
import { startSshd, type Sshd } from "../support/sshd.js";
import { tempDir } from "../support/temp.js";
import { waitFor } from "../support/wait.js";

let sshd: Sshd;
const tmp = tempDir("ocr-tunnel-");

before(async () => {
  sshd = await startSshd();
});
after(async () => {
  await sshd.close();
  tmp.remove();
});

function nonceOf(name: string): string | undefined {
  try {
    return (JSON.parse(readFileSync(path.join(tmp.path, `${name}.json`), "utf8")) as { nonce?: string }).nonce;
  } catch {
    return undefined;
  }
}

test("after a drop, a wall-clock jump (the laptop woke up) reconnects at once, without waiting out the backoff", async () => {
  let offset = 0;
  // A backoff that never ends by itself: the tunnel can only come back by being woken.
  const sleepUntilWoken: Sleep = (_ms, signal) => new Promise((_, reject) => signal?.addEventListener("abort", () => reject(signal.reason), { once: true }));
  const tunnel = new Tunnel({
    sshCommand: splitShellWords(sshd.sshCmd),
    registryDir: tmp.path,
    forward: "socket",
    localPort: 9, // nothing needs to answer behind the forward for this test
    base: { name: "sleepy", hostname: "laptop", localPort: 9, cwd: "/", id: "run-1", pid: process.pid },
    sleep: sleepUntilWoken,
    now: () => Date.now() + offset,
  });
  try {
    const first = await tunnel.attempt();
    assert.ok(first.ok, JSON.stringify(first));
    tunnel.setReady({ version: "test" });
    tunnel.start(first);
    const n1 = await waitFor(() => nonceOf("sleepy"), { what: "the first registration" });

    sshd.dropConnections();
    await waitFor(() => tunnel.state === "down", { what: "the tunnel to notice the drop" });
    offset += 120_000; // suspend for two minutes, as the wall clock sees it
    const n2 = await waitFor(() => tunnel.state === "up" && nonceOf("sleepy") !== n1 && nonceOf("sleepy"), { timeoutMs: 15_000, what: "a new connection after the clock jump" });
    assert.notEqual(n2, n1);
  } finally {
    await tunnel.close();
  }
  await waitFor(() => nonceOf("sleepy") === undefined, { what: "close() to remove the registration through the relay script" });
});

test("a wiped registry: the tunnel reconnects within seconds on a new socket, even while the relay holds a connection through the old one", async () => {
  const local = net.createServer((c) => c.on("data", () => {})); // opencode's stand-in: accepts, stays open
  await new Promise<void>((r) => local.listen(0, "127.0.0.1", () => r()));
  const localPort = (local.address() as net.AddressInfo).port;
  const registry = path.join(tmp.path, "wiped");
  mkdirSync(registry, { mode: 0o700 });
  const tunnel = new Tunnel({
    sshCommand: splitShellWords(sshd.sshCmd),
    registryDir: registry,
    forward: "socket",
    localPort,
    base: { name: "wipe", hostname: "laptop", localPort, cwd: "/", id: "run-2", pid: process.pid },
    checkMs: 200,
  });
  const held: net.Socket[] = [];
  try {
    const first = await tunnel.attempt();
    assert.ok(first.ok, JSON.stringify(first));
    tunnel.setReady({ version: "test" });
    tunnel.start(first);
    const reg = await waitFor(() => (existsSync(path.join(registry, "wipe.json")) ? tunnel.registration : undefined), { what: "the first registration" });
    // The relay keeps a connection open through the forward (an idle keep-alive, a long poll): ssh
    // would wait for it to close before exiting when the relay script ends.
    const conn = net.connect(reg.socket!);
    held.push(conn);
    await new Promise<void>((r, j) => conn.once("connect", () => r()).once("error", j));
    rmSync(registry, { recursive: true });
    mkdirSync(registry, { mode: 0o700 }); // the relay recreates its registry
    const again = await waitFor(() => (tunnel.state === "up" && tunnel.registration?.nonce !== reg.nonce && existsSync(path.join(registry, "wipe.json")) ? tunnel.registration : undefined), {
      timeoutMs: 10_000,
      what: "a new connection and registration after the wipe",
    });
    assert.ok(existsSync(again.socket!), "the new forwarded socket exists");
  } finally {
    for (const c of held) c.destroy();
    await tunnel.close();
    await new Promise<void>((r) => local.close(() => r()));
  }
});

test("the ssh command missing is fatal, with a line saying so", async () => {
  const tunnel = new Tunnel({
    sshCommand: ["no-such-ssh-binary", "relay"],
    registryDir: tmp.path,
    forward: "socket",
    localPort: 9,
    base: { name: "nossh", hostname: "h", localPort: 9, cwd: "/", id: "x" },
  });
  const r = await tunnel.attempt();
  assert.equal(r.ok, false);
  assert.ok(!r.ok && r.fatal);
  assert.match(!r.ok ? r.message : "", /not found.*RELAY_SSH_CMD/);
  await tunnel.close();
});

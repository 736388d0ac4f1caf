/**
 * The relay-side registration script, run by the real `sh` exactly as sshd runs a remote command
 * (`$SHELL -c "<command>"`), fed on stdin as the launcher feeds it.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chownSync, existsSync, lstatSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { createInterface } from "node:readline";
import { test } from "node:test";
import { remoteCommand } from "../../src/launcher/remote-script.js";
import { tempDir } from "../support/temp.js";
import { waitFor } from "../support/wait.js";

function runScript(args: Parameters<typeof remoteCommand>[0]) {
  const child = spawn("sh", ["-c", remoteCommand(args)], { stdio: ["pipe", "pipe", "pipe"] });
  const lines: string[] = [];
  createInterface({ input: child.stdout }).on("line", (l) => lines.push(l));
  const exited = new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
  return { child, lines, exited };
}

const reg = (name: string, id: string, nonce: string, extra = {}) => JSON.stringify({ name, hostname: "h", port: 1, cwd: "/", connectedAt: "now", id, nonce, ...extra });

test("writes each line atomically with mode 0600 and removes its own file when stdin ends", async () => {
  const tmp = tempDir("ocr-script-");
  const dir = path.join(tmp.path, "registry");
  try {
    const s = runScript({ dir, name: "lap", id: "id1", nonce: "n1" });
    await waitFor(() => s.lines.includes("ready"), { what: "ready" });
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    s.child.stdin.write(`${reg("lap", "id1", "n1")}\n`);
    await waitFor(() => s.lines.includes("ok"), { what: "ok" });
    const file = path.join(dir, "lap.json");
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(JSON.parse(readFileSync(file, "utf8")).nonce, "n1");
    s.child.stdin.write(`${reg("lap", "id1", "n1", { heartbeatAt: "later" })}\n`);
    await waitFor(() => s.lines.filter((l) => l === "ok").length === 2, { what: "second ok" });
    assert.equal(JSON.parse(readFileSync(file, "utf8")).heartbeatAt, "later");
    s.child.stdin.end();
    assert.equal(await s.exited, 0);
    assert.ok(!existsSync(file));
  } finally {
    tmp.remove();
  }
});

test("a late cleanup of an old connection leaves the new registration alone", async () => {
  const tmp = tempDir("ocr-script-");
  const dir = tmp.path;
  try {
    const old = runScript({ dir, name: "lap", id: "id1", nonce: "old" });
    await waitFor(() => old.lines.includes("ready"), { what: "old ready" });
    old.child.stdin.write(`${reg("lap", "id1", "old")}\n`);
    await waitFor(() => old.lines.includes("ok"), { what: "old ok" });
    // The same launcher run reconnects: its id lets it take over its own (fresh) file.
    const fresh = runScript({ dir, name: "lap", id: "id1", nonce: "new" });
    await waitFor(() => fresh.lines.includes("ready"), { what: "new ready" });
    fresh.child.stdin.write(`${reg("lap", "id1", "new")}\n`);
    await waitFor(() => fresh.lines.includes("ok"), { what: "new ok" });
    old.child.kill("SIGHUP"); // the old connection's session finally dies
    await old.exited;
    assert.equal(JSON.parse(readFileSync(path.join(dir, "lap.json"), "utf8")).nonce, "new");
    fresh.child.stdin.end();
    await fresh.exited;
  } finally {
    tmp.remove();
  }
});

test("another live launcher's name is refused; a stale one is taken over", async () => {
  const tmp = tempDir("ocr-script-");
  const dir = tmp.path;
  try {
    writeFileSync(path.join(dir, "lap.json"), reg("lap", "other", "x")); // fresh mtime: live
    const s = runScript({ dir, name: "lap", id: "me", nonce: "n" });
    assert.equal(await s.exited, 4);
    assert.deepEqual(s.lines, ["taken"]);
    const old = new Date(Date.now() - 5 * 60_000);
    const { utimesSync } = await import("node:fs");
    utimesSync(path.join(dir, "lap.json"), old, old); // no heartbeat for 5 minutes, no socket: stale
    const t = runScript({ dir, name: "lap", id: "me", nonce: "n" });
    await waitFor(() => t.lines.includes("ready"), { what: "ready over a stale file" });
    t.child.stdin.end();
    await t.exited;
  } finally {
    tmp.remove();
  }
});

test("a taken name removes the socket sshd bound for this connection; a foreign path is never removed", async () => {
  const tmp = tempDir("ocr-script-");
  const dir = path.join(tmp.path, "reg");
  const { mkdirSync, utimesSync } = await import("node:fs");
  mkdirSync(dir);
  const sock = path.join(dir, "lap-n.sock");
  const outsideSock = path.join(tmp.path, "victim.sock");
  const servers = [net.createServer(), net.createServer()];
  try {
    await new Promise<void>((r) => servers[0]!.listen(sock, () => r()));
    writeFileSync(path.join(dir, "lap.json"), reg("lap", "other", "x"));
    const s = runScript({ dir, name: "lap", id: "me", nonce: "n", socket: sock });
    assert.equal(await s.exited, 4);
    assert.ok(!existsSync(sock), "our own bound socket went with the refused connection");

    // A registration of ours naming a socket outside the registry (../): taking over must not delete it.
    await new Promise<void>((r) => servers[1]!.listen(outsideSock, () => r()));
    writeFileSync(path.join(dir, "lap.json"), reg("lap", "me", "old", { socket: `${dir}/../victim.sock` }));
    const old = new Date(Date.now() - 5 * 60_000);
    utimesSync(path.join(dir, "lap.json"), old, old);
    const t = runScript({ dir, name: "lap", id: "me", nonce: "n2" });
    await waitFor(() => t.lines.includes("ready"), { what: "ready" });
    assert.ok(existsSync(outsideSock), "a socket outside the registry is never removed");
    t.child.stdin.end();
    await t.exited;
  } finally {
    for (const srv of servers) srv.close();
    tmp.remove();
  }
});

test("socket mode waits for the forwarded socket and removes it at the end", async () => {
  const tmp = tempDir("ocr-script-");
  const sock = path.join(tmp.path, "lap-n.sock");
  const s = runScript({ dir: tmp.path, name: "lap", id: "me", nonce: "n", socket: sock });
  const server = net.createServer();
  try {
    assert.ok(!s.lines.includes("ready"));
    await new Promise<void>((r) => server.listen(sock, () => r()));
    await waitFor(() => s.lines.includes("ready"), { what: "ready once the socket exists" });
    s.child.stdin.end();
    await s.exited;
    assert.ok(!existsSync(sock));
  } finally {
    server.close();
    tmp.remove();
  }
});

test("an unwritable registry fails with exit 3 and says why", async () => {
  const s = runScript({ dir: "/proc/opencode-relay-nope", name: "lap", id: "me", nonce: "n" });
  assert.equal(await s.exited, 3);
  assert.match(s.lines.join("\n"), /^error: cannot create the registry directory/);
});

test("check: a replaced, symlinked or removed registration is rewritten from the last line; a healthy one is left alone", async () => {
  const tmp = tempDir("ocr-script-");
  const dir = path.join(tmp.path, "registry");
  const file = path.join(dir, "lap.json");
  const target = path.join(tmp.path, "elsewhere.json");
  try {
    const s = runScript({ dir, name: "lap", id: "id1", nonce: "n1" });
    await waitFor(() => s.lines.includes("ready"), { what: "ready" });
    assert.ok(s.lines.includes("caps check"), "the script announces that it understands check lines");
    const count = (l: string) => s.lines.filter((x) => x === l).length;
    const check = async () => {
      const before = count("alive");
      s.child.stdin.write("check\n");
      await waitFor(() => count("alive") === before + 1, { what: "alive" });
    };
    // Before any registration there is nothing to restore.
    await check();
    assert.ok(!existsSync(file));
    s.child.stdin.write(`${reg("lap", "id1", "n1")}\n`);
    await waitFor(() => count("ok") === 1, { what: "ok" });
    await check();
    assert.equal(count("restored"), 0, "our own file is left alone");

    writeFileSync(file, "garbage{");
    await check();
    assert.equal(count("restored"), 1);
    assert.equal(JSON.parse(readFileSync(file, "utf8")).nonce, "n1");

    // Another user's file under our name (the relay would refuse it anyway): ours goes back.
    writeFileSync(file, reg("lap", "someone-else", "other"));
    chownSync(file, 65534, 65534);
    await check();
    assert.equal(count("restored"), 2);
    assert.equal(JSON.parse(readFileSync(file, "utf8")).nonce, "n1");

    writeFileSync(target, reg("lap", "id1", "n1"));
    rmSync(file);
    symlinkSync(target, file);
    await check();
    assert.equal(count("restored"), 3, "a symlink is replaced even when it points at our content");
    assert.ok(!lstatSync(file).isSymbolicLink());
    assert.equal(readFileSync(target, "utf8"), reg("lap", "id1", "n1"), "the symlink's target is never written");

    rmSync(dir, { recursive: true });
    await check();
    assert.equal(count("restored"), 4, "a wiped registry (tcp forward) is recreated with the registration");
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.equal(JSON.parse(readFileSync(file, "utf8")).nonce, "n1");
    s.child.stdin.end();
    assert.equal(await s.exited, 0);
  } finally {
    tmp.remove();
  }
});

test("check: a forwarded socket that vanished ends the connection with exit 7, so the launcher reconnects", async () => {
  const tmp = tempDir("ocr-script-");
  const sock = path.join(tmp.path, "lap-n.sock");
  const server = net.createServer();
  try {
    await new Promise<void>((r) => server.listen(sock, () => r()));
    const s = runScript({ dir: tmp.path, name: "lap", id: "me", nonce: "n", socket: sock });
    await waitFor(() => s.lines.includes("ready"), { what: "ready" });
    s.child.stdin.write(`${reg("lap", "me", "n")}\n`);
    await waitFor(() => s.lines.includes("ok"), { what: "ok" });
    rmSync(sock);
    s.child.stdin.write("check\n");
    assert.equal(await s.exited, 7);
    assert.match(s.lines.join("\n"), /^error: the forwarded socket .* is gone/m);
    assert.ok(!existsSync(path.join(tmp.path, "lap.json")), "its registration is removed on the way out");
  } finally {
    server.close();
    tmp.remove();
  }
});

test("check: a registration another launcher of this account made after ours was wiped keeps the name; this connection yields (taken)", async () => {
  const tmp = tempDir("ocr-script-");
  const dir = tmp.path;
  const file = path.join(dir, "lap.json");
  const theirs = path.join(dir, `lap-${"b".repeat(16)}.sock`);
  const server = net.createServer();
  try {
    await new Promise<void>((r) => server.listen(theirs, () => r()));
    const s = runScript({ dir, name: "lap", id: "me", nonce: "n1" });
    await waitFor(() => s.lines.includes("ready"), { what: "ready" });
    s.child.stdin.write(`${reg("lap", "me", "n1")}\n`);
    await waitFor(() => s.lines.includes("ok"), { what: "ok" });
    writeFileSync(file, reg("lap", "other-run", "n2", { socket: theirs }));
    s.child.stdin.write("check\n");
    assert.equal(await s.exited, 4);
    assert.ok(s.lines.includes("taken"));
    assert.equal(JSON.parse(readFileSync(file, "utf8")).id, "other-run", "the other launcher's registration is left alone");
  } finally {
    server.close();
    tmp.remove();
  }
});

import assert from "node:assert/strict";
import { chownSync, existsSync, linkSync, mkdirSync, renameSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { Writable } from "node:stream";
import { afterEach, beforeEach, describe, test } from "node:test";
import { createLogger } from "../../../src/shared/logger.js";
import { LocalRelayTransport } from "../../../src/relay/transports/local-relay.js";
import type { TransportEvent } from "../../../src/relay/transports/transport.js";
import { tempDir } from "../../support/temp.js";
import { waitFor } from "../../support/wait.js";

function registration(name: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ name, hostname: "laptop", port: 10042, localPort: 4823, cwd: "/home/u/p", connectedAt: "2026-03-14T10:30:00Z", ...extra });
}

describe("local-relay transport", () => {
  let tmp: ReturnType<typeof tempDir>;
  let dir: string;
  let transport: LocalRelayTransport;
  let events: TransportEvent[];
  let log: string;

  beforeEach(async () => {
    tmp = tempDir("ocr-registry-");
    dir = path.join(tmp.path, "registry");
    events = [];
    log = "";
    const stream = new Writable({ write: (c, _e, cb) => ((log += c.toString()), cb()) });
    transport = new LocalRelayTransport({ dir, rescanIntervalMs: 60_000, settleMs: 100, logger: createLogger({ stream, level: "debug" }) });
    transport.subscribe((e) => events.push(e));
    await transport.start();
  });

  afterEach(async () => {
    await transport.close();
    tmp.remove();
  });

  test("creates a missing registry directory with mode 0700", async () => {
    const { statSync } = await import("node:fs");
    assert.equal(statSync(dir).mode & 0o777, 0o700);
  });

  test("reads the old tool's exact format, and follows a file appearing, changing and disappearing", async () => {
    const file = path.join(dir, "laptop-myproject.json");
    writeFileSync(file, registration("laptop-myproject"));
    await waitFor(() => transport.list().length === 1, { what: "the registration to load" });
    const e = transport.list()[0]!;
    assert.equal(e.key, "local-relay:laptop-myproject");
    assert.equal(e.baseUrl, "http://127.0.0.1:10042");
    writeFileSync(file, registration("laptop-myproject", { port: 10043 }));
    await waitFor(() => transport.list()[0]?.baseUrl === "http://127.0.0.1:10043", { what: "the change to load" });
    rmSync(file);
    await waitFor(() => transport.list().length === 0, { what: "the removal" });
    assert.deepEqual(events.map((x) => x.type), ["upsert", "upsert", "remove"]);
  });

  test("a half-written file is neither loaded nor reported while it may still be written, then loads", async () => {
    const file = path.join(dir, "slow-writer.json");
    writeFileSync(file, registration("slow-writer").slice(0, 20));
    writeFileSync(file, registration("slow-writer"));
    await waitFor(() => transport.list().length === 1, { what: "the completed file" });
    assert.doesNotMatch(log, /ignoring registry file/, "nothing reported for a file that completed");
  });

  test("a file that stays broken is reported once, and never deleted", async () => {
    const file = path.join(dir, "broken.json");
    writeFileSync(file, "{ not json");
    await waitFor(() => /ignoring registry file.*broken\.json.*not valid JSON/.test(log), { what: "the report" });
    await transport.rescan();
    await transport.rescan();
    assert.equal(log.match(/broken\.json/g)?.length, 1);
    assert.ok(existsSync(file));
  });

  test("refuses symlinks, mismatched names, traversal names, foreign sockets; reads nothing outside", async () => {
    const outside = path.join(tmp.path, "outside.json");
    writeFileSync(outside, registration("evil"));
    symlinkSync(outside, path.join(dir, "evil.json"));
    writeFileSync(path.join(dir, "other.json"), registration("not-other"));
    writeFileSync(path.join(dir, "trav.json"), registration("../../etc/passwd"));
    const sock = path.join(tmp.path, "foreign.sock");
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(sock, () => r()));
    try {
      chownSync(sock, 4242, 4242); // as root, make it another user's socket
      writeFileSync(path.join(dir, "hijack.json"), registration("hijack", { port: undefined, socket: sock }));
      // The same user's file AND socket: a root relay must not trust them either (only itself and the
      // registry directory's owner may register).
      const theirs = path.join(dir, "theirs.json");
      writeFileSync(theirs, registration("theirs", { port: undefined, socket: sock }));
      chownSync(theirs, 4242, 4242);
      await waitFor(
        () => ["evil.json.*symlink", "other.json.*does not match", "trav.json.*path separator", "hijack.json.*belongs to uid 4242", "theirs.json.*belongs to uid 4242, neither"].every((re) => new RegExp(re).test(log)),
        { what: "each refusal reported", timeoutMs: 5_000 },
      );
      assert.equal(transport.list().length, 0);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  test("prune deletes only the version it judged, never a rewritten registration", async () => {
    const file = path.join(dir, "gone.json");
    writeFileSync(file, registration("gone", { port: 10001 }));
    await waitFor(() => transport.list().length === 1, { what: "load" });
    // The launcher reconnects and re-registers while the stale version is being judged dead. Write the
    // new version without letting the watcher deliver it first: prune must notice the file changed.
    await transport.close();
    const tmpFile = path.join(dir, ".gone.json.tmp");
    writeFileSync(tmpFile, registration("gone", { port: 20000 }));
    renameSync(tmpFile, file);
    assert.equal(await transport.prune("local-relay:gone", "test"), false, "a rewritten file is not the one judged dead");
    assert.ok(existsSync(file));
  });

  test("prune removes a dead tunnel's socket that lies in the registry", async () => {
    const sock = path.join(dir, "dead-1.sock");
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(sock, () => r()));
    await new Promise<void>((r) => server.close(() => r()));
    // net.Server removes its socket on close; recreate a stale one the way sshd leaves it.
    const stale = net.createServer();
    await new Promise<void>((r) => stale.listen(sock, () => r()));
    try {
      writeFileSync(path.join(dir, "dead.json"), registration("dead", { port: undefined, socket: sock }));
      await waitFor(() => transport.list().length === 1, { what: "load" });
      assert.equal(await transport.prune("local-relay:dead", "test"), true);
      assert.ok(!existsSync(sock), "the socket in the registry went with its registration");
    } finally {
      stale.close();
    }
  });

  test("a wiped registry directory is recreated and watched again", async () => {
    writeFileSync(path.join(dir, "a.json"), registration("a"));
    await waitFor(() => transport.list().length === 1, { what: "load" });
    rmSync(dir, { recursive: true });
    await transport.rescan();
    assert.equal(transport.list().length, 0);
    assert.ok(existsSync(dir));
    writeFileSync(path.join(dir, "b.json"), registration("b"));
    await waitFor(() => transport.list().map((e) => e.name).join() === "b", { what: "the new file in the recreated directory" });
  });

  test("a wiped registry directory is recreated at once, without waiting for the periodic rescan", async () => {
    // rescanIntervalMs is a minute here: only the watcher noticing the removal can bring it back.
    for (const round of [1, 2]) {
      writeFileSync(path.join(dir, `w${round}.json`), registration(`w${round}`));
      await waitFor(() => transport.list().length === 1, { what: "load" });
      rmSync(dir, { recursive: true });
      await waitFor(() => existsSync(dir), { timeoutMs: 5_000, what: `the directory recreated (wipe ${round})` });
      await waitFor(() => transport.list().length === 0, { what: "the wiped registration gone" });
    }
    writeFileSync(path.join(dir, "after.json"), registration("after"));
    await waitFor(() => transport.list().map((e) => e.name).join() === "after", { what: "a file in the recreated directory" });
  });

  test("a root relay recreates a wiped registry with the owner it had (the account the tunnels log in as)", async () => {
    const owned = path.join(tmp.path, "owned");
    mkdirSync(owned, { mode: 0o700 });
    chownSync(owned, 4242, 4242);
    const other = new LocalRelayTransport({ dir: owned, rescanIntervalMs: 60_000 });
    await other.start();
    try {
      rmSync(owned, { recursive: true });
      await waitFor(() => existsSync(owned), { timeoutMs: 5_000, what: "the directory recreated" });
      const { statSync } = await import("node:fs");
      const st = statSync(owned);
      assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [4242, 4242, 0o700]);
    } finally {
      await other.close();
    }
  });

  test("dead tunnel sockets that no registration names are swept; live, named, young or foreign-named ones stay", async () => {
    const servers: net.Server[] = [];
    const listen = async (p: string) => {
      const srv = net.createServer();
      servers.push(srv);
      await new Promise<void>((r) => srv.listen(p, () => r()));
    };
    /** A socket file nothing listens on, as sshd leaves one: a hard link outlives the closed server. */
    const dead = async (p: string) => {
      const live = path.join(tmp.path, `live-${path.basename(p)}`);
      await listen(live);
      linkSync(live, p);
      await new Promise<void>((r) => servers.pop()!.close(() => r()));
    };
    const old = (p: string) => utimesSync(p, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    const hex = (c: string) => c.repeat(16);
    try {
      const orphan = path.join(dir, `lap-${hex("a")}.sock`);
      const named = path.join(dir, `desk-${hex("b")}.sock`);
      const young = path.join(dir, `lap-${hex("c")}.sock`);
      const other = path.join(dir, "something.sock");
      const alive = path.join(dir, `lap-${hex("d")}.sock`);
      for (const p of [orphan, named, young, other]) await dead(p);
      await listen(alive);
      for (const p of [orphan, named, other, alive]) old(p);
      writeFileSync(path.join(dir, "desk.json"), registration("desk", { port: undefined, socket: named }));
      await waitFor(() => transport.list().length === 1, { what: "desk loaded" });
      await transport.rescan(); // sweeps, without holding up the rescan
      await waitFor(() => !existsSync(orphan), { what: "the dead, unnamed, old tunnel socket to be removed" });
      await transport.sweepSockets(); // waits for the sweep running, plus one more pass
      assert.match(log, /removed a dead tunnel socket/);
      for (const p of [named, young, other, alive]) assert.ok(existsSync(p), `${path.basename(p)} stays\n${log}`);
    } finally {
      for (const srv of servers) srv.close();
    }
  });

  test("refuses a registry directory that is a symlink", async () => {
    const real = path.join(tmp.path, "real");
    mkdirSync(real);
    const link = path.join(tmp.path, "link");
    symlinkSync(real, link);
    const t = new LocalRelayTransport({ dir: link, rescanIntervalMs: 60_000 });
    await assert.rejects(t.start(), /is a symlink/);
    await t.close();
  });
});

/**
 * End to end: the built `opencode-mcp` over stdio (real MCP SDK client), real `opencode serve`
 * instances driven by the scripted model server, a real registry directory.
 *
 * Instances: "laptop-api" (password-protected, TCP port), "laptop-web" (behind a Unix socket, as an
 * `ssh -R /path.sock:…` tunnel leaves it). Both names start with "laptop", for the ambiguity checks.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, renameSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { startRelay, type RelayClient } from "../support/mcp.js";
import { startModelServer, type ModelServer } from "../support/model-server.js";
import { startOpencode, type OpencodeInstance } from "../support/opencode.js";
import { closedPort, forwardUnixSocket, startHalfOpenServer, type SocketForward } from "../support/socket-forward.js";
import { tempDir } from "../support/temp.js";
import { waitFor } from "../support/wait.js";

const PASSWORD = "s3cret-test-password";

describe("opencode-mcp end to end", { timeout: 300_000 }, () => {
  let model: ModelServer;
  let api: OpencodeInstance;
  let web: OpencodeInstance;
  let forward: SocketForward;
  let relay: RelayClient;
  const tmp = tempDir("ocr-e2e-");
  const registry = path.join(tmp.path, "registry");
  const auditFile = path.join(tmp.path, "audit.jsonl");
  const cleanups: Array<() => Promise<void> | void> = [];

  /** Writes a registration the way a careful launcher does: temp file, then rename. */
  function register(name: string, fields: Record<string, unknown>): string {
    const file = path.join(registry, `${name}.json`);
    const tmpFile = path.join(registry, `.${name}.json.tmp`);
    writeFileSync(tmpFile, JSON.stringify({ name, hostname: "laptop", cwd: "/home/user/" + name, connectedAt: new Date().toISOString(), ...fields }));
    renameSync(tmpFile, file);
    return file;
  }

  async function listed(): Promise<Array<{ name: string; status: string; problem?: string; busy?: boolean }>> {
    const r = await relay.call("instances");
    return (r.structuredContent as { instances: Array<{ name: string; status: string; problem?: string; busy?: boolean }> }).instances;
  }

  before(async () => {
    mkdirSync(registry, { mode: 0o700 });
    model = await startModelServer();
    [api, web] = await Promise.all([
      startOpencode({ modelUrl: model.url, password: PASSWORD, project: "api" }),
      startOpencode({ modelUrl: model.url, project: "web" }),
    ]);
    forward = await forwardUnixSocket(path.join(registry, "laptop-web-abc123.sock"), web.port);
    register("laptop-api", { port: api.port, localPort: api.port, auth: { username: "opencode", password: PASSWORD } });
    register("laptop-web", { port: undefined, socket: forward.path, localPort: web.port });
    relay = await startRelay({
      RELAY_REGISTRY_DIR: registry,
      HEALTH_INTERVAL_MS: "200",
      HEALTH_CHECK_TIMEOUT_MS: "300",
      PRUNE_AFTER_MS: "0",
      SEND_TIMEOUT_MS: "60000",
      AUDIT_LOG: auditFile,
    });
  });

  after(async () => {
    for (const c of cleanups.reverse()) await c();
    await relay?.close();
    await forward?.close();
    await Promise.all([api?.stop(), web?.stop()]);
    await model?.close();
    tmp.remove();
  });

  test("instances lists both registrations online, with versions", async () => {
    const list = await waitFor(
      async () => {
        const l = await listed();
        return l.length === 2 && l.every((i) => i.status === "online") && l;
      },
      { timeoutMs: 15_000, what: "both instances online" },
    );
    assert.deepEqual(list.map((i) => i.name), ["laptop-api", "laptop-web"]);
    const text = (await relay.call("instances")).text;
    assert.match(text, /laptop-api: online/);
    assert.match(text, /opencode \d+\.\d+/);
  });

  test("send to a password-protected instance streams deltas in order, equal to the final reply", async () => {
    const deltas: string[] = [];
    const r = await relay.call("send", { instance: "laptop-api", message: "/chunks 8 The quick brown fox jumps over the lazy dog, twice over." }, (d) => deltas.push(d));
    assert.ok(!r.isError, r.text);
    assert.equal(r.text, "The quick brown fox jumps over the lazy dog, twice over.");
    assert.equal(deltas.join(""), r.text, "the deltas add up to the reply, in order");
    assert.ok(deltas.length >= 2, `several deltas streamed, got ${deltas.length}`);
    assert.equal(model.replies.at(-1), r.text, "the reply is what the model produced");
  });

  test("send through a Unix socket works, and read shows the conversation", async () => {
    const r = await relay.call("send", { instance: "web", message: "hello over a socket" });
    assert.ok(!r.isError, r.text);
    assert.equal(r.text, "Reply to: hello over a socket");
    const read = await relay.call("read", { instance: "laptop-web", message_limit: 5 });
    assert.ok(!read.isError, read.text);
    assert.match(read.text, /user: hello over a socket/);
    assert.match(read.text, /assistant: Reply to: hello over a socket/);
  });

  test("a model error returns at once with the provider's message", async () => {
    const r = await relay.call("send", { instance: "laptop-api", message: "/error please" });
    assert.equal(r.isError, true);
    assert.match(r.text, /scripted provider failure/);
    assert.equal((r.structuredContent as { state: string }).state, "error", "ended on session.error, not by timeout");
  });

  test("a permission prompt returns at once; read shows it; abort stops the turn", async () => {
    const r = await relay.call("send", { instance: "laptop-api", message: "/permission run something", new_session: true });
    assert.ok(!r.isError, r.text);
    assert.equal((r.structuredContent as { state: string }).state, "waiting");
    assert.match(r.text, /waiting for permission to run bash \(echo hi\)/);
    const session = (r.structuredContent as { session: string }).session;

    const read = await relay.call("read", { instance: "laptop-api", session });
    assert.match(read.text, /\[tool: bash echo hi → (running|pending)\]/);
    assert.match(read.text, /Waiting for permission: bash \(echo hi\)/);

    const busy = await relay.call("send", { instance: "laptop-api", session, message: "are you there?" });
    assert.equal(busy.isError, true);
    assert.match(busy.text, /is busy/);

    const aborted = await relay.call("send", { instance: "laptop-api", session, abort: true });
    assert.ok(!aborted.isError, aborted.text);
    assert.match(aborted.text, /Aborted the running turn/);
    await waitFor(async () => /, idle;/.test((await relay.call("read", { instance: "laptop-api", session })).text), { what: "session idle after abort" });
  });

  test("wait=false returns once submitted; abort stops a hanging turn", async () => {
    const r = await relay.call("send", { instance: "laptop-web", message: "/hang forever", new_session: true, wait: false });
    assert.ok(!r.isError, r.text);
    assert.equal((r.structuredContent as { state: string }).state, "submitted");
    const session = (r.structuredContent as { session: string }).session;
    await waitFor(async () => /, busy;/.test((await relay.call("read", { instance: "laptop-web", session })).text), { what: "the hanging turn to be busy" });
    const a = await relay.call("send", { instance: "laptop-web", session, abort: true });
    assert.match(a.text, /Aborted/);
    await waitFor(async () => /, idle;/.test((await relay.call("read", { instance: "laptop-web", session })).text), { what: "session idle after abort" });
  });

  test("sessions can be picked by title or id prefix", async () => {
    const r = await relay.call("send", { instance: "laptop-web", message: "first in new", new_session: true });
    const session = (r.structuredContent as { session: string }).session;
    const byPrefix = await relay.call("read", { instance: "laptop-web", session: session.slice(0, session.length - 3) });
    assert.match(byPrefix.text, new RegExp(session));
    const none = await relay.call("read", { instance: "laptop-web", session: "no-such-session-title" });
    assert.equal(none.isError, true);
    assert.match(none.text, /No session matches/);
  });

  test("fuzzy names: ambiguity lists the candidates, no match lists what exists", async () => {
    const amb = await relay.call("send", { instance: "laptop", message: "hi" });
    assert.equal(amb.isError, true);
    assert.match(amb.text, /"laptop" matches laptop-api \(online[^)]*\) and laptop-web \(online[^)]*\); say which/);
    const none = await relay.call("read", { instance: "desktop" });
    assert.equal(none.isError, true);
    assert.match(none.text, /No instance matches "desktop"\. Available: laptop-api .* and laptop-web/);
    const ci = await relay.call("read", { instance: "LAPTOP-API" });
    assert.ok(!ci.isError, ci.text);
  });

  test("input errors say what to do", async () => {
    const nothing = await relay.call("send", { instance: "laptop-api" });
    assert.equal(nothing.isError, true);
    assert.match(nothing.text, /give a message to send, or abort=true/);
    const badModel = await relay.call("send", { instance: "laptop-api", message: "x", model: "nomodel" });
    assert.match(badModel.text, /provider\/model/);
  });

  test("a new registration is usable at once; a removed one is gone", async () => {
    const file = register("desk-new", { port: web.port });
    const r = await waitFor(
      async () => {
        const res = await relay.call("send", { instance: "desk-new", message: "are you new?", new_session: true });
        return !res.isError && res;
      },
      { timeoutMs: 5_000, what: "the new registration to answer send" },
    );
    assert.equal(r.text, "Reply to: are you new?");
    const { unlinkSync } = await import("node:fs");
    unlinkSync(file);
    await waitFor(async () => !(await listed()).some((i) => i.name === "desk-new"), { what: "desk-new to disappear" });
    const gone = await relay.call("send", { instance: "desk-new", message: "still there?" });
    assert.equal(gone.isError, true);
    assert.match(gone.text, /No instance matches "desk-new"/);
  });

  test("a tunnel that reconnects on a new socket mid-turn: send follows it and returns the whole reply", async () => {
    const first = await forwardUnixSocket(path.join(registry, "moving-aaaa.sock"), web.port);
    let second: SocketForward | undefined;
    cleanups.push(async () => {
      await first.close();
      await second?.close();
    });
    register("moving", { port: undefined, socket: first.path, localPort: web.port });
    await waitFor(async () => (await listed()).some((i) => i.name === "moving" && i.status === "online"), { what: "moving online" });
    const text = "One two three four five six seven eight nine ten eleven twelve.";
    let moved: Promise<void> | undefined;
    const r = await relay.call("send", { instance: "moving", message: `/slow 12 ${text}`, new_session: true }, () => {
      // The launcher's ssh died and reconnected: the old socket is gone, a new one is registered.
      moved ??= (async () => {
        await first.close();
        second = await forwardUnixSocket(path.join(registry, "moving-bbbb.sock"), web.port);
        register("moving", { port: undefined, socket: second.path, localPort: web.port });
      })();
    });
    await moved;
    assert.ok(moved, "the move happened during the turn");
    assert.ok(!r.isError, r.text);
    assert.equal(r.text, text);
  });

  test("wrong credentials are reported as such, not as offline", async () => {
    const file = register("wrongpw", { port: api.port, auth: { username: "opencode", password: "not-it" } });
    cleanups.push(async () => (await import("node:fs")).rmSync(file, { force: true }));
    await waitFor(async () => (await listed()).find((i) => i.name === "wrongpw" && i.status === "offline"), { what: "wrongpw to be judged" });
    const r = await relay.call("send", { instance: "wrongpw", message: "hi" });
    assert.equal(r.isError, true);
    assert.match(r.text, /refused our credentials/);
  });

  test("a dead instance is reported offline and pruned; a slow one is kept", async () => {
    const halfOpen = await startHalfOpenServer();
    cleanups.push(() => halfOpen.close());
    const deadFile = register("dead-laptop", { port: await closedPort() });
    const slowFile = register("slow-laptop", { port: halfOpen.port });
    cleanups.push(async () => (await import("node:fs")).rmSync(slowFile, { force: true }));

    const offline = await waitFor(async () => (await listed()).find((i) => i.name === "dead-laptop" && i.status === "offline"), {
      what: "dead-laptop offline",
    });
    assert.match(offline.problem ?? "", /refused/);
    const r = await relay.call("send", { instance: "dead-laptop", message: "hi" });
    assert.equal(r.isError, true);
    assert.match(r.text, /dead-laptop is offline since/);

    await waitFor(() => !existsSync(deadFile), { timeoutMs: 10_000, what: "the dead registration to be pruned" });
    const slow = await waitFor(async () => (await listed()).find((i) => i.name === "slow-laptop" && i.status === "offline"), { what: "slow-laptop judged" });
    assert.match(slow.problem ?? "", /no answer in time/);
    // Pruning of dead-laptop needed three refused sweeps; slow-laptop saw the same sweeps and stays.
    assert.ok(existsSync(slowFile), "a slow (timing-out) instance is never pruned");
    assert.ok((await listed()).some((i) => i.name === "slow-laptop"));
  });

  test("bad files are refused and left in place: half-written, invalid, symlinked, mismatched names", async () => {
    const half = path.join(registry, "half-written.json");
    writeFileSync(half, '{"name": "half-written", "hostname": "lap');
    const invalid = register("bad-port", { port: "not-a-number" });
    const outside = path.join(tmp.path, "outside.json");
    writeFileSync(outside, JSON.stringify({ name: "linked", hostname: "x", port: api.port, cwd: "/", connectedAt: "now" }));
    const link = path.join(registry, "linked.json");
    symlinkSync(outside, link);
    const traversal = path.join(registry, "sneaky.json");
    writeFileSync(traversal, JSON.stringify({ name: "../etc/passwd", hostname: "x", port: api.port, cwd: "/", connectedAt: "now" }));

    await waitFor(
      () => {
        const err = relay.stderr();
        return (
          /half-written\.json reason=.*not valid JSON/.test(err) &&
          /bad-port\.json reason=.*port/.test(err) &&
          /linked\.json reason=.*symlink/.test(err) &&
          /sneaky\.json reason=.*(path separator|does not match)/.test(err)
        );
      },
      { timeoutMs: 5_000, what: "a warning for each bad file" },
    );
    const names = (await listed()).map((i) => i.name);
    for (const bad of ["half-written", "bad-port", "linked", "../etc/passwd"]) assert.ok(!names.includes(bad), `${bad} is not listed`);
    for (const f of [half, invalid, link, traversal, outside]) assert.ok(existsSync(f), `${path.basename(f)} was not deleted`);
    const once = relay.stderr().match(/half-written\.json reason=/g) ?? [];
    assert.equal(once.length, 1, "each bad file is reported once");

    // The half-written file completes: it is picked up.
    writeFileSync(half, JSON.stringify({ name: "half-written", hostname: "laptop", port: api.port, cwd: "/", connectedAt: "now", auth: { password: PASSWORD } }));
    await waitFor(async () => (await listed()).some((i) => i.name === "half-written"), { what: "the completed file to be listed" });
  });

  test("every send and abort left one audit line: caller, instance, session, hash (not text), outcome", async () => {
    const { readFileSync, statSync } = await import("node:fs");
    assert.equal(statSync(auditFile).mode & 0o777, 0o600);
    const lines = readFileSync(auditFile, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    const fox = lines.find((l) => l.instance === "laptop-api" && l.outcome === "done" && l.messageLength === "/chunks 8 The quick brown fox jumps over the lazy dog, twice over.".length);
    assert.ok(fox, "the first send is audited");
    assert.equal(fox.caller, "stdio");
    assert.equal(fox.action, "send");
    assert.match(String(fox.session), /^ses_/);
    assert.match(String(fox.messageSha256), /^[0-9a-f]{64}$/);
    assert.equal(fox.messageText, undefined, "no text unless AUDIT_INCLUDE_TEXT=1");
    assert.equal(typeof fox.durationMs, "number");
    assert.ok(lines.some((l) => l.action === "abort" && l.outcome === "aborted"), "aborts are audited");
    assert.ok(lines.some((l) => l.outcome === "error: error" && l.instance === "laptop-api"), "failed turns are audited");
    assert.ok(lines.some((l) => l.instanceQuery === "laptop" && String(l.outcome).startsWith("refused:")), "refusals are audited");
    assert.ok(!readFileSync(auditFile, "utf8").includes("quick brown fox"), "the message text is not in the log");
  });

  test("stdout carried nothing but MCP; logs went to stderr", () => {
    assert.deepEqual(relay.protocolErrors.map((e) => e.message), []);
    assert.match(relay.stderr(), /opencode-mcp ready/);
  });
});

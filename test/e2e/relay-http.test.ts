/**
 * End to end over Streamable HTTP: the built `opencode-mcp --http` as a child process on a free port,
 * the MCP SDK's StreamableHTTPClientTransport + Client, a real `opencode serve` driven by the scripted
 * model server, a real registry directory. Raw requests (forged Host, Origin, oversized bodies) go
 * through node:http. Everything stays on 127.0.0.1.
 */
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import getPort from "get-port";
import { ChildStdioTransport, connectHttp, spawnRelay, startHttpRelay, toolCaller, type HttpClient, type RelayProcess } from "../support/mcp.js";
import { startModelServer, type ModelServer } from "../support/model-server.js";
import { startOpencode, type OpencodeInstance } from "../support/opencode.js";
import { tempDir } from "../support/temp.js";
import { waitFor } from "../support/wait.js";

const CHAT_TOKEN = "chat-0123456789abcdef0123456789abcdef";
const CI_TOKEN = "ci-fedcba9876543210fedcba9876543210";
const BARE_TOKEN = "bare-00112233445566778899aabbccddeeff";
const ALLOWED_ORIGIN = "https://chat.example.com";
const MAX_BODY = 64 * 1024;
const INSTANCE = "desk-api";

const MCP_HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream" };
const INITIALIZE = JSON.stringify({
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1.0.0" } },
});

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request on its own connection, headers exactly as given (Host included). */
function raw(port: number, opts: { method?: string; path: string; headers?: Record<string, string>; body?: string | Buffer; chunked?: boolean }): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method: opts.method ?? "GET", path: opts.path, headers: opts.headers, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`no answer to ${opts.method ?? "GET"} ${opts.path}`)));
    req.on("error", reject);
    if (opts.body !== undefined && opts.chunked) {
      // No Content-Length: the server must count while reading.
      const buf = Buffer.from(opts.body);
      for (let i = 0; i < buf.length; i += 8192) req.write(buf.subarray(i, i + 8192));
      req.end();
    } else {
      req.end(opts.body);
    }
  });
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

describe("opencode-mcp --http end to end", { timeout: 300_000 }, () => {
  let model: ModelServer;
  let api: OpencodeInstance;
  let relay: RelayProcess;
  let port: number;
  let url: string;
  const tmp = tempDir("ocr-http-");
  const registry = path.join(tmp.path, "registry");
  const auditFile = path.join(tmp.path, "audit.jsonl");
  const clients: HttpClient[] = [];
  const processes: RelayProcess[] = [];

  const host = () => `127.0.0.1:${port}`;

  async function client(token: string): Promise<HttpClient> {
    const c = await connectHttp(url, token);
    clients.push(c);
    return c;
  }

  async function online(c: { call: HttpClient["call"] }): Promise<void> {
    await waitFor(
      async () => {
        const r = await c.call("instances");
        const list = (r.structuredContent as { instances: Array<{ name: string; status: string }> }).instances;
        return list.some((i) => i.name === INSTANCE && i.status === "online");
      },
      { timeoutMs: 15_000, what: `${INSTANCE} online` },
    );
  }

  /** Waits until opencode has asked the model for the turn carrying `marker`: the send is now waiting. */
  async function modelGot(marker: string): Promise<void> {
    await waitFor(() => model.requests.some((r) => JSON.stringify(r.messages).includes(marker)), { timeoutMs: 20_000, what: `the model to receive "${marker}"` });
  }

  function auditLines(): Array<Record<string, unknown>> {
    return readFileSync(auditFile, "utf8")
      .trim()
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  before(async () => {
    mkdirSync(registry, { mode: 0o700 });
    model = await startModelServer();
    api = await startOpencode({ modelUrl: model.url, project: "api" });
    const file = path.join(registry, `${INSTANCE}.json`);
    writeFileSync(`${file}.tmp`, JSON.stringify({ name: INSTANCE, hostname: "desk", port: api.port, localPort: api.port, cwd: api.cwd, connectedAt: new Date().toISOString() }));
    renameSync(`${file}.tmp`, file);
    port = await getPort();
    url = `http://127.0.0.1:${port}/mcp`;
    relay = await startHttpRelay({
      RELAY_REGISTRY_DIR: registry,
      MCP_HTTP_PORT: String(port),
      MCP_BEARER_TOKEN: `chat=${CHAT_TOKEN}, ci=${CI_TOKEN}, ${BARE_TOKEN}`,
      ALLOWED_ORIGINS: ALLOWED_ORIGIN,
      MCP_MAX_BODY_BYTES: String(MAX_BODY),
      HEALTH_INTERVAL_MS: "200",
      HEALTH_CHECK_TIMEOUT_MS: "300",
      SEND_TIMEOUT_MS: "60000",
      AUDIT_LOG: auditFile,
    });
    processes.push(relay);
  });

  after(async () => {
    await Promise.allSettled(clients.map((c) => c.close()));
    await Promise.allSettled(processes.map((p) => p.kill()));
    await api?.stop();
    await model?.close();
    tmp.remove();
  });

  test("two clients at once, one per rotated token: tools list, and sends whose progress deltas add up to the reply", async () => {
    const [chat, ci] = await Promise.all([client(CHAT_TOKEN), client(CI_TOKEN)]);
    assert.notEqual(chat.transport.sessionId, ci.transport.sessionId, "one MCP session each");
    for (const c of [chat, ci]) {
      const { tools } = await c.client.listTools();
      assert.deepEqual(tools.map((t) => t.name).sort(), ["instances", "read", "send"]);
    }
    await online(chat);
    const alpha = "Alpha streams over HTTP to the first client, piece by piece.";
    const beta = "Beta streams over HTTP to the second client, at the same time.";
    const deltas: Record<string, string[]> = { chat: [], ci: [] };
    const [a, b] = await Promise.all([
      chat.call("send", { instance: INSTANCE, message: `/chunks 6 ${alpha}`, new_session: true }, (d) => deltas.chat!.push(d)),
      ci.call("send", { instance: INSTANCE, message: `/chunks 7 ${beta}`, new_session: true }, (d) => deltas.ci!.push(d)),
    ]);
    assert.ok(!a.isError, a.text);
    assert.ok(!b.isError, b.text);
    assert.equal(a.text, alpha);
    assert.equal(b.text, beta);
    assert.equal(deltas.chat!.join(""), alpha, "chat's deltas add up to its reply");
    assert.equal(deltas.ci!.join(""), beta, "ci's deltas add up to its reply");
    assert.ok(deltas.chat!.length >= 2 && deltas.ci!.length >= 2, "several deltas each");
  });

  test("a bare token in the list is known by its position; audit lines name the label, never a token", async () => {
    const bare = await client(BARE_TOKEN);
    const r = await bare.call("send", { instance: INSTANCE, message: "hello from the bare token", new_session: true });
    assert.equal(r.text, "Reply to: hello from the bare token");
    const lines = auditLines();
    const by = (len: number) => lines.find((l) => l.messageLength === len);
    assert.equal(by("/chunks 6 Alpha streams over HTTP to the first client, piece by piece.".length)?.caller, "chat");
    assert.equal(by("/chunks 7 Beta streams over HTTP to the second client, at the same time.".length)?.caller, "ci");
    assert.equal(by("hello from the bare token".length)?.caller, "token#3");
    for (const t of [CHAT_TOKEN, CI_TOKEN, BARE_TOKEN]) {
      assert.ok(!readFileSync(auditFile, "utf8").includes(t), "no token in the audit log");
      assert.ok(!relay.stderr().includes(t), "no token in the log");
    }
  });

  test("missing or wrong token: 401 with WWW-Authenticate: Bearer; the SDK client cannot connect", async () => {
    const missing = await raw(port, { method: "POST", path: "/mcp", headers: { host: host(), ...MCP_HEADERS }, body: INITIALIZE });
    assert.equal(missing.status, 401);
    assert.match(String(missing.headers["www-authenticate"]), /^Bearer /);
    const wrong = await raw(port, { method: "POST", path: "/mcp", headers: { host: host(), ...MCP_HEADERS, ...bearer(`${CHAT_TOKEN}x`) }, body: INITIALIZE });
    assert.equal(wrong.status, 401);
    assert.match(String(wrong.headers["www-authenticate"]), /^Bearer .*error="invalid_token"/);
    const basic = await raw(port, { method: "POST", path: "/mcp", headers: { host: host(), ...MCP_HEADERS, authorization: `Basic ${Buffer.from(`u:${CHAT_TOKEN}`).toString("base64")}` }, body: INITIALIZE });
    assert.equal(basic.status, 401);
    await assert.rejects(connectHttp(url, "not-the-token-0123456789"), /401|Unauthorized/i);
    await assert.rejects(connectHttp(url), /401|Unauthorized/i);
  });

  test("a Host header not allowed is refused 403, on every path (DNS rebinding)", async () => {
    for (const p of ["/mcp", "/healthz", "/readyz"]) {
      const r = await raw(port, { method: p === "/mcp" ? "POST" : "GET", path: p, headers: { host: `rebind.example.com:${port}`, ...MCP_HEADERS, ...bearer(CHAT_TOKEN) }, body: p === "/mcp" ? INITIALIZE : undefined });
      assert.equal(r.status, 403, p);
    }
    for (const h of [`localhost:${port}`, `[::1]:${port}`, `127.0.0.1:${port}`]) {
      assert.equal((await raw(port, { path: "/healthz", headers: { host: h } })).status, 200, `${h} is a default allowed Host`);
    }
  });

  test("an Origin not allowed is refused 403; the allowed one passes", async () => {
    const bad = await raw(port, { method: "POST", path: "/mcp", headers: { host: host(), origin: "https://evil.example", ...MCP_HEADERS, ...bearer(CHAT_TOKEN) }, body: INITIALIZE });
    assert.equal(bad.status, 403);
    const good = await raw(port, { method: "POST", path: "/mcp", headers: { host: host(), origin: ALLOWED_ORIGIN, ...MCP_HEADERS, ...bearer(CHAT_TOKEN) }, body: INITIALIZE });
    assert.equal(good.status, 200, good.body);
    assert.ok(good.headers["mcp-session-id"], "a session was opened");
    const sid = String(good.headers["mcp-session-id"]);
    const del = await raw(port, { method: "DELETE", path: "/mcp", headers: { host: host(), origin: ALLOWED_ORIGIN, "mcp-session-id": sid, ...bearer(CHAT_TOKEN) } });
    assert.equal(del.status, 200);
  });

  test("a body over MCP_MAX_BODY_BYTES is refused 413, declared or streamed", async () => {
    const big = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { padding: "x".repeat(MAX_BODY + 1) } });
    const declared = await raw(port, { method: "POST", path: "/mcp", headers: { host: host(), ...MCP_HEADERS, ...bearer(CHAT_TOKEN), "content-length": String(Buffer.byteLength(big)) }, body: big });
    assert.equal(declared.status, 413);
    const streamed = await raw(port, { method: "POST", path: "/mcp", headers: { host: host(), ...MCP_HEADERS, ...bearer(CHAT_TOKEN) }, body: big, chunked: true });
    assert.equal(streamed.status, 413);
  });

  test("/healthz and /readyz answer without a token and name no instance", async () => {
    const health = await raw(port, { path: "/healthz", headers: { host: host() } });
    assert.equal(health.status, 200);
    const h = JSON.parse(health.body) as { status: string; instances: { online: number; offline: number; unknown: number } };
    assert.equal(h.status, "ok");
    assert.equal(h.instances.online, 1);
    const ready = await raw(port, { path: "/readyz", headers: { host: host() } });
    assert.equal(ready.status, 200);
    for (const body of [health.body, ready.body]) {
      assert.ok(!body.includes(INSTANCE) && !body.includes("desk") && !body.includes(api.cwd), `no instance name in ${body}`);
    }
    assert.equal((await raw(port, { path: "/elsewhere", headers: { host: host() } })).status, 404);
  });

  test("a session belongs to the token that opened it; DELETE ends it", async () => {
    const mine = await client(CHAT_TOKEN);
    const sid = mine.transport.sessionId!;
    const list = JSON.stringify({ jsonrpc: "2.0", id: 7, method: "tools/list", params: {} });
    const headers = { host: host(), ...MCP_HEADERS, "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18" };
    const other = await raw(port, { method: "POST", path: "/mcp", headers: { ...headers, ...bearer(CI_TOKEN) }, body: list });
    assert.equal(other.status, 404, "another token cannot use the session");
    const own = await raw(port, { method: "POST", path: "/mcp", headers: { ...headers, ...bearer(CHAT_TOKEN) }, body: list });
    assert.equal(own.status, 200);
    assert.match(own.body, /"send"/);

    await mine.transport.terminateSession();
    const after = await raw(port, { method: "POST", path: "/mcp", headers: { ...headers, ...bearer(CHAT_TOKEN) }, body: list });
    assert.equal(after.status, 404, "the session is gone after DELETE");
    await waitFor(() => relay.stderr().includes(`MCP session closed component=http session=${sid}`), { what: "the session close to be logged" });
  });

  test("idle sessions expire after MCP_SESSION_IDLE_MS; a client with an open stream keeps its session", async () => {
    const ownPort = await getPort();
    const p = await startHttpRelay({ RELAY_REGISTRY_DIR: registry, MCP_HTTP_PORT: String(ownPort), MCP_SESSION_IDLE_MS: "1000" });
    processes.push(p);
    // No token configured on a loopback bind: open, and the caller is "anonymous".
    const listening = await connectHttp(`http://127.0.0.1:${ownPort}/mcp`);
    clients.push(listening);
    const init = await raw(ownPort, { method: "POST", path: "/mcp", headers: { host: `127.0.0.1:${ownPort}`, ...MCP_HEADERS }, body: INITIALIZE });
    assert.equal(init.status, 200, init.body);
    const idle = String(init.headers["mcp-session-id"]);
    await waitFor(() => p.stderr().includes(`MCP session expired component=http session=${idle} caller=anonymous`), { timeoutMs: 5_000, what: "the idle session to expire" });
    const list = JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tools/list", params: {} });
    const gone = await raw(ownPort, { method: "POST", path: "/mcp", headers: { host: `127.0.0.1:${ownPort}`, ...MCP_HEADERS, "mcp-session-id": idle }, body: list });
    assert.equal(gone.status, 404);
    // The SDK client holds its GET stream open, so its older session was never idle.
    assert.ok(!p.stderr().includes(`session=${listening.transport.sessionId} caller=anonymous idleMs`));
    assert.equal((await listening.client.listTools()).tools.length, 3);
  });

  test("binding 0.0.0.0 without MCP_BEARER_TOKEN is refused before listening: one line, non-zero exit", async () => {
    const p = spawnRelay({ RELAY_REGISTRY_DIR: registry, MCP_HTTP_HOST: "0.0.0.0", MCP_HTTP_PORT: String(await getPort()) }, ["--http"]);
    processes.push(p);
    assert.equal(await p.exited, 2);
    assert.equal(
      p.stderr(),
      'opencode-mcp: bad configuration: MCP_HTTP_HOST="0.0.0.0": refusing to serve a non-loopback address without MCP_BEARER_TOKEN; set a token, or bind 127.0.0.1 behind a reverse proxy\n',
    );
    assert.equal(p.stdout(), "");
  });

  test("SIGTERM during a running send: the client gets a relay-shutdown result, the process exits 0 within the bound", async () => {
    const ownPort = await getPort();
    const p = await startHttpRelay({
      RELAY_REGISTRY_DIR: registry,
      MCP_HTTP_PORT: String(ownPort),
      MCP_BEARER_TOKEN: `chat=${CHAT_TOKEN}`,
      HEALTH_INTERVAL_MS: "200",
      SHUTDOWN_TIMEOUT_MS: "10000",
      AUDIT_LOG: auditFile,
    });
    processes.push(p);
    const c = await connectHttp(`http://127.0.0.1:${ownPort}/mcp`, CHAT_TOKEN);
    clients.push(c);
    await online(c);
    const pending = c.call("send", { instance: INSTANCE, message: "/hang until the HTTP relay stops", new_session: true }, () => {});
    await modelGot("/hang until the HTTP relay stops");
    const signalled = Date.now();
    p.child.kill("SIGTERM");
    const r = await pending;
    assert.ok(!r.isError, r.text);
    assert.match(r.text, /The relay is shutting down, so it stopped waiting; the turn on desk-api continues there/);
    assert.equal((r.structuredContent as { state: string }).state, "relay-shutdown");
    // The bound: SHUTDOWN_TIMEOUT_MS for the calls, then at most 5 s to close the rest.
    await waitFor(() => p.child.exitCode !== null || p.child.signalCode !== null, { timeoutMs: 15_000, what: "the relay to exit" });
    assert.equal(p.child.exitCode, 0, p.stderr());
    assert.ok(Date.now() - signalled < 15_000, "within SHUTDOWN_TIMEOUT_MS and the close bound");
    assert.match(p.stderr(), /shut down cleanly why=SIGTERM/);
    assert.equal(p.stdout(), "", "HTTP mode writes nothing on stdout");
    const line = auditLines().find((l) => l.messageLength === "/hang until the HTTP relay stops".length);
    assert.equal(line?.outcome, "relay-shutdown");
    assert.equal(line?.caller, "chat");
  });

  test("stdio mode: SIGTERM during a running send answers relay-shutdown and exits 0", async () => {
    const p = spawnRelay({ RELAY_REGISTRY_DIR: registry, HEALTH_INTERVAL_MS: "200", LOG_LEVEL: "debug" });
    processes.push(p);
    const stdio = new Client({ name: "relay-stdio-test", version: "1.0.0" });
    await stdio.connect(new ChildStdioTransport(p));
    const call = toolCaller(stdio);
    await online({ call });
    const pending = call("send", { instance: INSTANCE, message: "/hang until the stdio relay stops", new_session: true });
    await modelGot("/hang until the stdio relay stops");
    p.child.kill("SIGTERM");
    const r = await pending;
    assert.equal((r.structuredContent as { state: string }).state, "relay-shutdown", r.text);
    assert.match(r.text, /The relay is shutting down/);
    assert.equal(await p.exited, 0, p.stderr());
    assert.match(p.stderr(), /shut down cleanly why=SIGTERM/);
  });

  test("the first relay's stdout stayed silent", () => {
    assert.equal(relay.stdout(), "");
  });
});

import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { HealthMonitor } from "../../../src/relay/health/health-monitor.js";
import { createInstanceClient } from "../../../src/relay/opencode/client.js";
import type { InstanceEndpoint } from "../../../src/relay/transports/transport.js";
import { closedPort, startHalfOpenServer } from "../../support/socket-forward.js";

function endpoint(name: string, port: number, heartbeatAt?: string): InstanceEndpoint {
  return { key: `t:${name}`, name, transport: "t", baseUrl: `http://127.0.0.1:${port}`, ...(heartbeatAt ? { heartbeatAt } : {}) };
}

/** A monitor on a hand-driven clock; probes are real HTTP against real sockets. */
function monitor(endpoints: InstanceEndpoint[], pruned: string[], pruneAfterMs = 60_000) {
  let now = Date.parse("2026-11-21T00:00:00Z");
  const clients = new Map(endpoints.map((e) => [e.key, createInstanceClient(e)]));
  const m = new HealthMonitor({
    timeoutMs: 200,
    intervalMs: 1_000_000,
    concurrency: 4,
    pruneAfterMs,
    endpoints: () => endpoints.filter((e) => !pruned.includes(e.key)),
    clientFor: (k) => clients.get(k),
    prune: async (k) => (pruned.push(k), true),
    now: () => new Date(now),
    details: false,
  });
  return { m, advance: (ms: number) => (now += ms) };
}

describe("health monitor", () => {
  let html: http.Server;
  let htmlPort: number;
  let halfOpen: Awaited<ReturnType<typeof startHalfOpenServer>>;

  before(async () => {
    // opencode answers unknown paths with its web UI: an HTML 200 must not count as healthy.
    html = http.createServer((_q, s) => s.writeHead(200, { "content-type": "text/html" }).end("<html></html>"));
    await new Promise<void>((r) => html.listen(0, "127.0.0.1", () => r()));
    htmlPort = (html.address() as AddressInfo).port;
    halfOpen = await startHalfOpenServer();
  });

  after(async () => {
    html.close();
    await halfOpen.close();
  });

  test("a refused instance goes offline at once and is pruned only after the grace period", async () => {
    const pruned: string[] = [];
    const { m, advance } = monitor([endpoint("dead", await closedPort())], pruned);
    await m.sweep();
    assert.equal(m.get("t:dead").status, "offline");
    assert.equal(m.get("t:dead").lastFailure?.kind, "refused");
    await m.sweep();
    await m.sweep();
    assert.deepEqual(pruned, [], "three refusals within the grace period do not prune");
    advance(61_000);
    await m.sweep();
    assert.deepEqual(pruned, ["t:dead"]);
  });

  test("one failed probe never prunes, even with no grace period", async () => {
    const pruned: string[] = [];
    const { m } = monitor([endpoint("blip", await closedPort())], pruned, 0);
    await m.sweep();
    assert.deepEqual(pruned, []);
  });

  test("a recent heartbeat keeps a refused instance", async () => {
    const pruned: string[] = [];
    const { m, advance } = monitor([endpoint("hb", await closedPort(), "2026-11-21T00:00:30Z")], pruned, 10_000);
    for (let i = 0; i < 4; i++) await m.sweep();
    advance(20_000);
    await m.sweep();
    assert.deepEqual(pruned, [], "heartbeat after the refusals began");
  });

  test("a half-open instance is offline after two timeouts and is never pruned", async () => {
    const pruned: string[] = [];
    const { m, advance } = monitor([endpoint("slow", halfOpen.port)], pruned, 0);
    await m.sweep();
    assert.equal(m.get("t:slow").status, "unknown", "one slow answer is not an outage");
    await m.sweep();
    assert.equal(m.get("t:slow").status, "offline");
    assert.equal(m.get("t:slow").lastFailure?.kind, "timeout");
    advance(3_600_000);
    for (let i = 0; i < 3; i++) await m.sweep();
    assert.deepEqual(pruned, []);
  });

  test("an HTML 200 is not healthy", async () => {
    const { m } = monitor([endpoint("web", htmlPort)], []);
    await m.sweep();
    assert.notEqual(m.get("t:web").status, "online");
    assert.equal(m.get("t:web").lastFailure?.kind, "bad-response");
  });

  test("probes of one instance are joined, not stacked", async () => {
    const { m } = monitor([endpoint("slow", halfOpen.port)], []);
    const a = m.probe("t:slow");
    const b = m.probe("t:slow");
    assert.equal(a, b);
    await a;
  });
});

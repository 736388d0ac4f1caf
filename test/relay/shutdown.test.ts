import assert from "node:assert/strict";
import { test } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { CallTracker } from "../../src/relay/call-tracker.js";
import { createShutdown, type ShutdownOptions } from "../../src/relay/shutdown.js";
import { silentLogger } from "../../src/shared/logger.js";
import { waitFor } from "../support/wait.js";

function options(overrides: Partial<ShutdownOptions> = {}) {
  const steps: string[] = [];
  const exited: number[] = [];
  const controller = new AbortController();
  controller.signal.addEventListener("abort", () => steps.push("abort"));
  const opts: ShutdownOptions = {
    tracker: new CallTracker(),
    controller,
    timeoutMs: 1_000,
    closeTimeoutMs: 1_000,
    stopAccepting: () => void steps.push("stop accepting"),
    closeTransports: async () => void steps.push("close transports"),
    closeResources: async () => void steps.push("close resources"),
    logger: silentLogger,
    exit: (code) => void exited.push(code),
    ...overrides,
  };
  return { opts, steps, exited };
}

test("in order: stop accepting, abort, (drain), transports, resources, exit 0; once", async () => {
  const { opts, steps, exited } = options();
  const shutdown = createShutdown(opts);
  await Promise.all([shutdown("SIGTERM"), shutdown("SIGINT"), shutdown("stdin closed")]);
  assert.deepEqual(steps, ["stop accepting", "abort", "close transports", "close resources"]);
  assert.deepEqual(exited, [0]);
});

test("a call that outlives SHUTDOWN_TIMEOUT_MS: exit 1, without waiting on the rest", async () => {
  const tracker = new CallTracker();
  const server = new McpServer({ name: "t", version: "1" });
  server.registerTool("forever", { description: "never ends" }, () => new Promise(() => {}));
  const [a, b] = InMemoryTransport.createLinkedPair();
  await server.connect(tracker.wrap(b));
  const client = new Client({ name: "c", version: "1" });
  await client.connect(a);
  void client.callTool({ name: "forever", arguments: {} }).catch(() => {});
  await waitFor(() => tracker.inFlight === 1, { what: "the call to run" });

  const { opts, steps, exited } = options({ tracker, timeoutMs: 30 });
  await createShutdown(opts)("SIGTERM");
  assert.deepEqual(exited, [1]);
  assert.deepEqual(steps, ["stop accepting", "abort"]);
  await client.close();
});

test("closing that hangs: exit 1 at the close bound", async () => {
  const { opts, exited } = options({ closeTimeoutMs: 30, closeResources: () => new Promise(() => {}) });
  await createShutdown(opts)("SIGTERM");
  assert.deepEqual(exited, [1]);
});

/** CallTracker between the real SDK McpServer and Client, over the SDK's in-memory transport. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { CallTracker, SHUTTING_DOWN_MESSAGE } from "../../src/relay/call-tracker.js";
import { waitFor } from "../support/wait.js";

/** A server whose `hold` tool answers only when the test says so (or the call is cancelled). */
async function setup() {
  const tracker = new CallTracker();
  const releases: Array<() => void> = [];
  const server = new McpServer({ name: "t", version: "1" });
  server.registerTool("hold", { description: "waits" }, async (extra): Promise<CallToolResult> => {
    await new Promise<void>((resolve) => {
      releases.push(resolve);
      extra.signal.addEventListener("abort", () => resolve(), { once: true });
    });
    return { content: [{ type: "text", text: "released" }] };
  });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  const wrapped = tracker.wrap(serverSide);
  let closed = false;
  wrapped.onclose = () => (closed = true);
  await server.connect(wrapped);
  const client = new Client({ name: "c", version: "1" });
  await client.connect(clientSide);
  return { tracker, client, server, releases, closed: () => closed };
}

const text = (r: unknown) => ((r as CallToolResult).content[0] as { text: string }).text;

test("a call counts from request to response", async () => {
  const { tracker, client, releases } = await setup();
  assert.equal(tracker.inFlight, 0);
  const call = client.callTool({ name: "hold", arguments: {} });
  await waitFor(() => releases.length === 1, { what: "the tool to run" });
  assert.equal(tracker.inFlight, 1);
  releases[0]!();
  assert.equal(text(await call), "released");
  assert.equal(tracker.inFlight, 0);
  await client.close();
});

test("drain waits for running calls and refuses new ones with a clear error", async () => {
  const { tracker, client, releases } = await setup();
  const running = client.callTool({ name: "hold", arguments: {} });
  await waitFor(() => releases.length === 1, { what: "the tool to run" });
  let drained: boolean | undefined;
  const draining = tracker.drain(10_000).then((d) => (drained = d));
  await assert.rejects(client.callTool({ name: "hold", arguments: {} }), (err: Error) => err.message.includes(SHUTTING_DOWN_MESSAGE));
  await assert.rejects(client.listTools(), /shutting down/);
  assert.equal(drained, undefined, "still draining while the call runs");
  releases[0]!();
  assert.equal(text(await running), "released", "the running call still answers");
  await draining;
  assert.equal(drained, true);
  await client.close();
});

test("drain gives up at its bound", async () => {
  const { tracker, client, releases } = await setup();
  void client.callTool({ name: "hold", arguments: {} }).catch(() => {});
  await waitFor(() => releases.length === 1, { what: "the tool to run" });
  assert.equal(await tracker.drain(50), false);
  assert.equal(tracker.inFlight, 1);
  await client.close();
});

test("a cancelled call and a closed transport stop counting (the SDK sends no response for them)", async () => {
  const { tracker, client, releases, closed } = await setup();
  const ac = new AbortController();
  const cancelled = client.callTool({ name: "hold", arguments: {} }, undefined, { signal: ac.signal });
  await waitFor(() => releases.length === 1, { what: "the tool to run" });
  ac.abort();
  await assert.rejects(cancelled);
  await waitFor(() => tracker.inFlight === 0, { what: "the cancelled call to stop counting" });

  void client.callTool({ name: "hold", arguments: {} }).catch(() => {});
  await waitFor(() => tracker.inFlight === 1, { what: "the second call to count" });
  await client.close();
  await waitFor(() => closed(), { what: "the server side to close" });
  assert.equal(tracker.inFlight, 0);
  assert.equal(await tracker.drain(1_000), true);
});

/** The built opencode-mcp as a process: its start-up contract and its exits. */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { test } from "node:test";
import { RELAY_MAIN, startRelay } from "../support/mcp.js";
import { tempDir } from "../support/temp.js";
import { waitFor } from "../support/wait.js";

function run(env: Record<string, string>, args: string[] = []) {
  const child = spawn(process.execPath, [RELAY_MAIN, ...args], { env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
  return { child, exited, out: () => stdout, err: () => stderr };
}

test("bad configuration: one line on stderr naming the variable, nothing on stdout, exit 2", async () => {
  const p = run({ HEALTH_CHECK_TIMEOUT_MS: "soon" });
  assert.equal(await p.exited, 2);
  assert.equal(p.out(), "");
  assert.equal(p.err(), 'opencode-mcp: bad configuration: HEALTH_CHECK_TIMEOUT_MS="soon": must be a whole number\n');
});

test("an unusable registry directory stops start-up with a sentence, exit 1", async () => {
  const tmp = tempDir("ocr-proc-");
  try {
    const { symlinkSync } = await import("node:fs");
    symlinkSync(tmp.path, path.join(tmp.path, "link"));
    const p = run({ RELAY_REGISTRY_DIR: path.join(tmp.path, "link") });
    assert.equal(await p.exited, 1);
    assert.match(p.err(), /^opencode-mcp: cannot start: registry directory .* is a symlink; point RELAY_REGISTRY_DIR at a real directory\n$/);
    assert.equal(p.out(), "");
  } finally {
    tmp.remove();
  }
});

test("SIGTERM and a closed stdin both end the server cleanly", async () => {
  const tmp = tempDir("ocr-proc-");
  try {
    for (const how of ["SIGTERM", "stdin"] as const) {
      const p = run({ RELAY_REGISTRY_DIR: path.join(tmp.path, how) });
      await waitFor(() => /opencode-mcp ready/.test(p.err()), { what: "ready" });
      if (how === "SIGTERM") p.child.kill("SIGTERM");
      else p.child.stdin.end();
      assert.equal(await p.exited, 0, how);
      assert.equal(p.out(), "", "nothing but MCP on stdout");
    }
  } finally {
    tmp.remove();
  }
});

test("the MCP handshake lists exactly the three tools with their schemas", async () => {
  const tmp = tempDir("ocr-proc-");
  const relay = await startRelay({ RELAY_REGISTRY_DIR: tmp.path });
  try {
    const { tools } = await relay.client.listTools();
    assert.deepEqual(tools.map((t) => t.name).sort(), ["instances", "read", "send"]);
    const send = tools.find((t) => t.name === "send")!;
    assert.deepEqual(send.inputSchema.required, ["instance"]);
    assert.deepEqual(Object.keys(send.inputSchema.properties ?? {}).sort(), ["abort", "agent", "instance", "message", "model", "new_session", "session", "wait"]);
    const read = tools.find((t) => t.name === "read")!;
    assert.deepEqual(Object.keys(read.inputSchema.properties ?? {}).sort(), ["instance", "message_limit", "session"]);
    assert.equal(tools.find((t) => t.name === "instances")!.annotations?.readOnlyHint, true);
  } finally {
    await relay.close();
    tmp.remove();
  }
});

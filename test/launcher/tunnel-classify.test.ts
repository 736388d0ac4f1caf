import assert from "node:assert/strict";
import { test } from "node:test";
import { TUNNEL_BACKOFF, Tunnel, classifySshFailure } from "../../src/launcher/tunnel.js";
import { backoffDelay, type Sleep } from "../../src/shared/retry.js";
import { waitFor } from "../support/wait.js";

test("failures that retrying cannot fix are fatal, with a line saying what to fix", () => {
  const cases: Array<[string, number | null, RegExp]> = [
    ["user@127.0.0.1: Permission denied (publickey).", 255, /authentication.*RELAY_SSH_CMD/],
    ["Host key verification failed.", 255, /host key is not trusted/],
    ["ssh: Could not resolve hostname relay.example: Name or service not known", 255, /check the host/],
    ["Error: remote port forwarding failed for listen path /tmp/x.sock", 255, /refused the reverse forward.*RELAY_FORWARD=tcp/],
    ["gcloud: command not found", 127, /not found/],
  ];
  for (const [stderr, code, re] of cases) {
    const f = classifySshFailure(stderr, code, "");
    assert.equal(f.fatal, true, stderr);
    assert.match(f.message, re);
  }
  assert.equal(classifySshFailure("", 3, "error: the registry directory /x is not writable\n").fatal, true);
});

test("network trouble is not fatal; a taken name is recognised", () => {
  assert.equal(classifySshFailure("ssh: connect to host 127.0.0.1 port 2222: Connection refused", 255, "").fatal, false);
  assert.equal(classifySshFailure("Connection to 127.0.0.1 closed by remote host.", 255, "ready\n").fatal, false);
  assert.equal(classifySshFailure("", 4, "taken\n").nameTaken, true);
});

test("backoff: 0.5 s first, doubling with ±20% jitter, capped at 30 s", () => {
  assert.equal(backoffDelay(TUNNEL_BACKOFF, 0, () => 0.5), 500);
  assert.equal(backoffDelay(TUNNEL_BACKOFF, 1, () => 0.5), 1000);
  assert.equal(backoffDelay(TUNNEL_BACKOFF, 0, () => 0), 400);
  assert.equal(backoffDelay(TUNNEL_BACKOFF, 0, () => 1), 600);
  assert.equal(backoffDelay(TUNNEL_BACKOFF, 20, () => 0.5), 30_000);
  assert.ok(backoffDelay(TUNNEL_BACKOFF, 20, () => 1) <= 36_000);
});

test("with no network on this machine the tunnel retries every second instead of backing off; the relay's refusals still back off", async () => {
  const run = async (stderrLine: string) => {
    const delays: number[] = [];
    const sleep: Sleep = async (ms) => {
      delays.push(ms);
      if (delays.length >= 6) void tunnel.close();
    };
    // A real process standing in for ssh that fails the way ssh does.
    const tunnel: Tunnel = new Tunnel({
      sshCommand: ["sh", "-c", `echo '${stderrLine}' >&2; exit 255`, "ssh"],
      registryDir: "/tmp/unused",
      forward: "tcp",
      localPort: 9,
      base: { name: "offline", hostname: "laptop", localPort: 9, cwd: "/", id: "run-x", pid: process.pid },
      sleep,
      random: () => 0.5,
    });
    tunnel.start();
    await waitFor(() => tunnel.state === "closed", { what: "six attempts" });
    return delays;
  };
  assert.deepEqual(await run("ssh: connect to host 10.0.0.1 port 22: Network is unreachable"), [1000, 1000, 1000, 1000, 1000, 1000]);
  assert.deepEqual(await run("ssh: connect to host 10.0.0.1 port 22: Connection refused"), [500, 1000, 2000, 4000, 8000, 16000]);
});

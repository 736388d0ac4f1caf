import assert from "node:assert/strict";
import { test } from "node:test";
import { loadRelayConfig } from "../../src/relay/config.js";

test("defaults are the old tool's", () => {
  const c = loadRelayConfig({});
  assert.equal(c.registryDir, "/tmp/opencode-relay");
  assert.equal(c.discoveryIntervalMs, 30_000);
  assert.equal(c.healthTimeoutMs, 3_000);
  assert.deepEqual(c.transports, ["local-relay"]);
  assert.equal(c.sendTimeoutMs, 300_000);
});

test("a bad value names the variable and what would do", () => {
  assert.throws(() => loadRelayConfig({ SEND_TIMEOUT_MS: "5m" }), /^ConfigError: SEND_TIMEOUT_MS="5m": must be a whole number$/);
  assert.throws(() => loadRelayConfig({ TRANSPORT: "carrier-pigeon" }), /TRANSPORT="carrier-pigeon": each transport must be one of local-relay, static/);
  assert.throws(() => loadRelayConfig({ RELAY_REGISTRY_DIR: "relative/dir" }), /RELAY_REGISTRY_DIR="relative\/dir": must be an absolute path/);
  assert.throws(() => loadRelayConfig({ TRANSPORT: "local-relay,static" }), /STATIC_INSTANCES_FILE: must be set/);
  assert.throws(() => loadRelayConfig({ LOG_LEVEL: "loud" }), /LOG_LEVEL="loud"/);
});

test("empty values mean unset; several transports at once", () => {
  const c = loadRelayConfig({ SEND_TIMEOUT_MS: "", TRANSPORT: "local-relay, static", STATIC_INSTANCES_FILE: "/etc/instances.json" });
  assert.equal(c.sendTimeoutMs, 300_000);
  assert.deepEqual(c.transports, ["local-relay", "static"]);
});

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

test("HTTP defaults: stdio unless --http or MCP_TRANSPORT=http; loopback, port 8808, /mcp, loopback Host names", () => {
  assert.equal(loadRelayConfig({}).mode, "stdio");
  assert.equal(loadRelayConfig({ MCP_TRANSPORT: "http" }).mode, "http");
  const c = loadRelayConfig({}, { http: true });
  assert.equal(c.mode, "http");
  assert.equal(c.shutdownTimeoutMs, 10_000);
  assert.deepEqual(
    { ...c.http, allowedHosts: [...(c.http.allowedHosts ?? [])].sort() },
    {
      host: "127.0.0.1",
      port: 8808,
      path: "/mcp",
      tokens: [],
      allowedHosts: ["127.0.0.1:8808", "[::1]:8808", "localhost:8808"],
      allowedOrigins: [],
      maxBodyBytes: 1_048_576,
      sessionIdleMs: 1_800_000,
    },
  );
});

test("HTTP settings parse: token list with labels, hosts, origins, IPv6 bind", () => {
  const c = loadRelayConfig(
    {
      MCP_HTTP_HOST: "[::1]",
      MCP_HTTP_PORT: "9000",
      MCP_PATH: "/relay/mcp",
      MCP_BEARER_TOKEN: "chat=0123456789abcdef0123, fedcba9876543210fedc",
      ALLOWED_HOSTS: "Relay.Example.com, relay.example.com:443",
      ALLOWED_ORIGINS: "https://chat.example.com,http://localhost:3000",
      MCP_MAX_BODY_BYTES: "4096",
    },
    { http: true },
  );
  assert.equal(c.http.host, "::1");
  assert.equal(c.http.port, 9000);
  assert.equal(c.http.path, "/relay/mcp");
  assert.deepEqual(c.http.tokens.map((t) => t.label), ["chat", "token#2"]);
  assert.deepEqual(c.http.allowedHosts, ["relay.example.com", "relay.example.com:443"]);
  assert.deepEqual(c.http.allowedOrigins, ["https://chat.example.com", "http://localhost:3000"]);
  assert.equal(c.http.maxBodyBytes, 4096);
});

test("a non-loopback bind needs a token (HTTP mode only) and then checks no Host unless ALLOWED_HOSTS says", () => {
  for (const host of ["0.0.0.0", "::", "10.0.0.5", "relay.example.com"]) {
    assert.throws(() => loadRelayConfig({ MCP_HTTP_HOST: host }, { http: true }), new RegExp(`^ConfigError: MCP_HTTP_HOST="${host.replace(/\./g, "\\.")}": refusing to serve a non-loopback address without MCP_BEARER_TOKEN`));
  }
  assert.equal(loadRelayConfig({ MCP_HTTP_HOST: "0.0.0.0" }).mode, "stdio", "stdio mode does not bind anything");
  const open = loadRelayConfig({ MCP_HTTP_HOST: "0.0.0.0", MCP_BEARER_TOKEN: "0123456789abcdef0123" }, { http: true });
  assert.equal(open.http.allowedHosts, undefined);
  for (const host of ["127.0.0.1", "127.1.2.3", "localhost", "::1"]) assert.equal(loadRelayConfig({ MCP_HTTP_HOST: host }, { http: true }).http.tokens.length, 0);
});

test("bad HTTP values name the variable; a bad token list never quotes a token", () => {
  assert.throws(() => loadRelayConfig({ MCP_HTTP_PORT: "70000" }), /^ConfigError: MCP_HTTP_PORT="70000": must be at most 65535$/);
  assert.throws(() => loadRelayConfig({ MCP_PATH: "mcp" }), /^ConfigError: MCP_PATH="mcp": must start with \//);
  assert.throws(() => loadRelayConfig({ MCP_PATH: "/healthz" }), /MCP_PATH="\/healthz": must not be \/healthz or \/readyz/);
  assert.throws(() => loadRelayConfig({ MCP_TRANSPORT: "sse" }), /^ConfigError: MCP_TRANSPORT="sse"/);
  assert.throws(() => loadRelayConfig({ ALLOWED_ORIGINS: "https://chat.example.com/" }), /ALLOWED_ORIGINS=.*each origin must look like/);
  assert.throws(() => loadRelayConfig({ MCP_MAX_BODY_BYTES: "0" }), /MCP_MAX_BODY_BYTES="0": must be at least 1/);
  for (const [value, why] of [
    ["short-secret", /entry 1: the token is shorter than 16 characters/],
    ["ci=short-secret", /entry 1 \(ci\): the token is shorter than 16/],
    ["a=0123456789abcdef0123,a=fedcba9876543210fedc", /entry 2 \(a\): label a is used twice/],
    ["0123456789abcdef0123,x=0123456789abcdef0123", /entry 2 \(x\): same token as entry 1/],
    ["0123456789abcdef\u00e90123", /entry 1: a token may only contain visible ASCII/],
  ] as const) {
    assert.throws(
      () => loadRelayConfig({ MCP_BEARER_TOKEN: value }),
      (err: Error) => {
        assert.match(err.message, why);
        for (const part of value.split(/[,=]/)) if (part.length > 2) assert.ok(!err.message.includes(part), `"${err.message}" quotes a secret`);
        return true;
      },
    );
  }
});

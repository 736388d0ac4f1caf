import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { hostAllowed, isLoopbackHost, originAllowed, readBody, type BodyRead } from "../../../src/relay/http/guards.js";

test("loopback: 127.0.0.0/8, ::1 in any spelling, IPv4-mapped loopback, localhost; nothing else", () => {
  for (const h of ["127.0.0.1", "127.9.8.7", "::1", "[::1]", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "localhost", "LOCALHOST"]) assert.ok(isLoopbackHost(h), h);
  for (const h of ["0.0.0.0", "::", "10.0.0.1", "::ffff:10.0.0.1", "128.0.0.1", "localhost.example.com", "relay", "1.127.0.0"]) assert.ok(!isLoopbackHost(h), h);
});

test("Host and Origin checks", () => {
  const hosts = ["127.0.0.1:8808", "localhost:8808"];
  assert.ok(hostAllowed("LocalHost:8808", hosts));
  assert.ok(!hostAllowed("localhost:8809", hosts));
  assert.ok(!hostAllowed(undefined, hosts), "no Host header is refused when Hosts are checked");
  assert.ok(hostAllowed("anything", undefined));
  assert.ok(originAllowed(undefined, []), "no Origin: not a browser");
  assert.ok(!originAllowed("https://evil.example", []));
  assert.ok(originAllowed("https://Chat.example.com", ["https://chat.example.com"]));
  assert.ok(!originAllowed("null", ["https://chat.example.com"]));
});

test("readBody: within the bound, over it declared, over it streamed", async () => {
  let last: Promise<BodyRead> | undefined;
  const server = http.createServer((req, res) => {
    last = readBody(req, 10);
    void last.then((r) => {
      req.resume();
      res.end(r.ok ? r.body.toString() : r.reason);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  const post = (body: string, chunked: boolean) =>
    new Promise<string>((resolve, reject) => {
      const req = http.request({ host: "127.0.0.1", port, method: "POST", agent: false, headers: chunked ? {} : { "content-length": Buffer.byteLength(body) } }, (res) => {
        let out = "";
        res.on("data", (d: Buffer) => (out += d.toString()));
        res.on("end", () => resolve(out));
      });
      req.on("error", reject);
      if (chunked) {
        for (const ch of body) req.write(ch);
        req.end();
      } else {
        req.end(body);
      }
    });
  try {
    assert.equal(await post("0123456789", false), "0123456789");
    assert.equal(await post("0123456789a", false), "too-large");
    assert.equal(await post("0123456789abc", true), "too-large");
    assert.equal(await post("short", true), "short");
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});

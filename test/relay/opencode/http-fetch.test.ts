import assert from "node:assert/strict";
import http from "node:http";
import path from "node:path";
import { test } from "node:test";
import { createHttpFetch } from "../../../src/relay/opencode/http-fetch.js";
import { tempDir } from "../../support/temp.js";

test("fetch over a Unix socket: headers, body, streaming, 204 and abort", async () => {
  const tmp = tempDir("ocr-fetch-");
  const sock = path.join(tmp.path, "api.sock");
  const server = http.createServer((req, res) => {
    if (req.url === "/echo") {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ auth: req.headers.authorization, body })));
    } else if (req.url === "/stream") {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("data: 1\n\n");
      setTimeout(() => res.end("data: 2\n\n"), 20);
    } else if (req.url === "/empty") {
      res.writeHead(204).end();
    } else {
      res.writeHead(200); // never ends: for the abort
      res.write("x");
    }
  });
  await new Promise<void>((r) => server.listen(sock, () => r()));
  try {
    const f = createHttpFetch({ socketPath: sock });
    const echo = await f("http://localhost/echo", { method: "POST", body: "hi", headers: { authorization: "Basic abc" } });
    assert.deepEqual(await echo.json(), { auth: "Basic abc", body: "hi" });
    assert.equal(await (await f("http://localhost/stream")).text(), "data: 1\n\ndata: 2\n\n");
    assert.equal((await f("http://localhost/empty")).status, 204);
    const ac = new AbortController();
    const hanging = await f("http://localhost/hang", { signal: ac.signal });
    const reading = hanging.text();
    ac.abort();
    await assert.rejects(reading);
  } finally {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    tmp.remove();
  }
});

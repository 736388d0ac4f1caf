import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { StaticTransport } from "../../../src/relay/transports/static.js";
import { tempDir } from "../../support/temp.js";
import { waitFor } from "../../support/wait.js";

test("reads direct URLs with credentials from env, and follows edits", async () => {
  const tmp = tempDir("ocr-static-");
  const file = path.join(tmp.path, "instances.json");
  writeFileSync(file, JSON.stringify({ instances: [{ name: "desk", url: "http://127.0.0.1:4096/", passwordEnv: "DESK_PW", cwd: "/src" }] }));
  const t = new StaticTransport({ file, env: { DESK_PW: "pw" } });
  try {
    await t.start();
    assert.deepEqual(t.list(), [
      { key: "static:desk", name: "desk", transport: "static", hostname: "127.0.0.1", baseUrl: "http://127.0.0.1:4096", cwd: "/src", auth: { username: "opencode", password: "pw" } },
    ]);
    writeFileSync(file, JSON.stringify([{ name: "mini", url: "https://127.0.0.1:8443" }]));
    await waitFor(() => t.list().map((e) => e.name).join() === "mini", { what: "the edit to load" });
    writeFileSync(file, "{ broken");
    await t.close(); // a broken edit keeps the last good list
    assert.equal(t.list().length, 1);
  } finally {
    await t.close();
    tmp.remove();
  }
});

test("bad files are refused at start with a sentence naming the problem", async () => {
  const tmp = tempDir("ocr-static-");
  const file = path.join(tmp.path, "instances.json");
  const cases: Array<[unknown, RegExp]> = [
    [[{ name: "a", url: "ftp://x" }], /url must be http/],
    [[{ name: "a/b", url: "http://x" }], /path separator/],
    [[{ name: "a", url: "http://x" }, { name: "a", url: "http://y" }], /appears twice/],
    [[{ name: "a", url: "http://x", passwordEnv: "NOPE" }], /NOPE, which is not set/],
  ];
  try {
    for (const [content, re] of cases) {
      writeFileSync(file, JSON.stringify(content));
      await assert.rejects(new StaticTransport({ file, env: {} }).start(), re);
    }
    await assert.rejects(new StaticTransport({ file: path.join(tmp.path, "missing.json") }).start(), /cannot read STATIC_INSTANCES_FILE/);
  } finally {
    tmp.remove();
  }
});

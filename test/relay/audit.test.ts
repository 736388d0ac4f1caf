import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { Writable } from "node:stream";
import { test } from "node:test";
import { createAuditLog } from "../../src/relay/audit.js";
import { loadRelayConfig } from "../../src/relay/config.js";
import { createLogger } from "../../src/shared/logger.js";
import { tempDir } from "../support/temp.js";

const entry = { caller: "token#1", action: "send" as const, instanceQuery: "desk", instance: "desk", session: "ses_1", message: "rm -rf /", outcome: "done", durationMs: 12 };

test("text only with AUDIT_INCLUDE_TEXT; hash and length always", () => {
  const tmp = tempDir("ocr-audit-");
  try {
    const file = path.join(tmp.path, "a.jsonl");
    const log = createLogger({ stream: new Writable({ write: (_c, _e, cb) => cb() }) });
    const plain = createAuditLog({ target: { path: file }, includeText: false, logger: log, now: () => new Date(0) });
    plain.record(entry);
    plain.close();
    const withText = createAuditLog({ target: { path: file }, includeText: true, logger: log });
    withText.record(entry);
    withText.close();
    const [a, b] = readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(a, {
      time: "1970-01-01T00:00:00.000Z", audit: true, caller: "token#1", action: "send", instanceQuery: "desk", instance: "desk", session: "ses_1", outcome: "done", durationMs: 12,
      messageLength: 8, messageSha256: createHash("sha256").update("rm -rf /").digest("hex"),
    });
    assert.equal(b!.messageText, "rm -rf /");
  } finally {
    tmp.remove();
  }
});

test("a failed write is loud, never silent", () => {
  let errors = "";
  const logger = createLogger({ stream: new Writable({ write: (c, _e, cb) => ((errors += c.toString()), cb()) }) });
  const broken = new Writable({ write: (_c, _e, cb) => cb() });
  broken.write = () => {
    throw new Error("ENOSPC: no space left on device");
  };
  createAuditLog({ target: "stderr", includeText: false, logger, stderr: broken }).record(entry);
  assert.match(errors, /ERROR AUDIT LOG WRITE FAILED: this call is not in the audit log .*ENOSPC/);
});

test("an unopenable audit file stops start-up with a sentence; config names bad values", () => {
  assert.throws(() => createAuditLog({ target: { path: "/proc/nope/audit.jsonl" }, includeText: false, logger: createLogger({ stream: process.stderr }) }), /AUDIT_LOG=\/proc\/nope\/audit.jsonl: cannot open for appending/);
  assert.throws(() => loadRelayConfig({ AUDIT_LOG: "audit.log" }), /AUDIT_LOG="audit.log": must be stderr, off, or an absolute file path/);
  assert.deepEqual(loadRelayConfig({}).audit, "stderr");
});

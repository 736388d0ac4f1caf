import assert from "node:assert/strict";
import { test } from "node:test";
import { BearerAuth, parseBearerTokens } from "../../../src/relay/http/auth.js";

test("token or label=token; unlabelled tokens are known by position", () => {
  assert.deepEqual(parseBearerTokens(" chat=aaaaaaaaaaaaaaaaaaaa , bbbbbbbbbbbbbbbbbbbb,, ci@host=cccccccccccccccccccc"), [
    { label: "chat", token: "aaaaaaaaaaaaaaaaaaaa" },
    { label: "token#2", token: "bbbbbbbbbbbbbbbbbbbb" },
    { label: "ci@host", token: "cccccccccccccccccccc" },
  ]);
  // A token with "=" after a character no label may hold stays whole; base64 padding needs a label.
  assert.deepEqual(parseBearerTokens("a+b/cdefghijklmnop=="), [{ label: "token#1", token: "a+b/cdefghijklmnop==" }]);
  assert.deepEqual(parseBearerTokens("old=YWJjZGVmZ2hpamtsbW5vcA=="), [{ label: "old", token: "YWJjZGVmZ2hpamtsbW5vcA==" }]);
  assert.throws(() => parseBearerTokens(" , "), /no token in the list/);
});

test("every configured token is accepted and named by its label; anything else is refused", () => {
  const auth = new BearerAuth(parseBearerTokens("new=0123456789abcdef0123,old=fedcba9876543210fedc"));
  assert.equal(auth.open, false);
  assert.deepEqual(auth.check("Bearer 0123456789abcdef0123"), { ok: true, label: "new" });
  assert.deepEqual(auth.check("bearer   fedcba9876543210fedc "), { ok: true, label: "old" }, "scheme is case-insensitive");
  assert.deepEqual(auth.check("Bearer 0123456789abcdef012"), { ok: false, reason: "invalid" }, "a prefix is not the token");
  assert.deepEqual(auth.check("Bearer 0123456789abcdef01234"), { ok: false, reason: "invalid" });
  assert.deepEqual(auth.check(undefined), { ok: false, reason: "missing" });
  assert.deepEqual(auth.check("Basic 0123456789abcdef0123"), { ok: false, reason: "missing" });
  assert.deepEqual(auth.check("Bearer"), { ok: false, reason: "missing" });
  assert.equal(new BearerAuth([]).open, true);
});

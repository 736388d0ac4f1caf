import assert from "node:assert/strict";
import { test } from "node:test";
import { shellQuote, splitShellWords } from "../../src/launcher/shell-words.js";

test("splits like a shell", () => {
  assert.deepEqual(splitShellWords("ssh user@relay"), ["ssh", "user@relay"]);
  assert.deepEqual(splitShellWords(`gcloud compute ssh relay --zone=europe-west1-b --`), ["gcloud", "compute", "ssh", "relay", "--zone=europe-west1-b", "--"]);
  assert.deepEqual(splitShellWords(`ssh -i "/home/me/my key" -o 'ProxyCommand=nc %h %p' a\\ b ""`), ["ssh", "-i", "/home/me/my key", "-o", "ProxyCommand=nc %h %p", "a b", ""]);
  assert.deepEqual(splitShellWords(`  "a\\"b"  `), ['a"b']);
});

test("unterminated quotes are errors", () => {
  assert.throws(() => splitShellWords(`ssh "relay`), /unterminated double quote/);
  assert.throws(() => splitShellWords(`ssh 'relay`), /unterminated single quote/);
});

test("quote round-trips through split", () => {
  for (const w of ["plain", "with space", "it's", "", "$HOME", "a\"b", "semi;colon"]) {
    assert.deepEqual(splitShellWords(shellQuote(w)), [w]);
  }
});

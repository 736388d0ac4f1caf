import assert from "node:assert/strict";
import { test } from "node:test";
import { listWords, matchName } from "../../../src/relay/instances/resolve-name.js";

const names = ["laptop-api", "laptop-web", "Desktop", "desk", "pi"];
const m = (q: string) => matchName(q, names, (n) => n);

test("exact beats everything", () => assert.deepEqual(m("desk"), { kind: "found", item: "desk" }));
test("case-insensitive exact beats prefix", () => assert.deepEqual(m("DESK"), { kind: "found", item: "desk" }));
test("prefix before substring", () => assert.deepEqual(m("deskt"), { kind: "found", item: "Desktop" }));
test("substring last", () => assert.deepEqual(m("web"), { kind: "found", item: "laptop-web" }));
test("ambiguity lists the candidates", () => assert.deepEqual(m("laptop"), { kind: "ambiguous", candidates: ["laptop-api", "laptop-web"] }));
test("no match", () => assert.deepEqual(m("zzz"), { kind: "none" }));
test("blank matches nothing", () => assert.deepEqual(m("  "), { kind: "none" }));
test("list words", () => {
  assert.equal(listWords(["a"]), "a");
  assert.equal(listWords(["a", "b"]), "a and b");
  assert.equal(listWords(["a", "b", "c"]), "a, b and c");
});

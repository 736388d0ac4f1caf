/**
 * The turn tracker on event sequences shaped like those real opencode 1.18 emits (recorded from
 * `GET /event` during real turns), including the orderings that broke the tool we replace.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Event } from "@opencode-ai/sdk/v2";
import { PART_SEPARATOR, TurnTracker, replyText } from "../../../src/relay/opencode/turn.js";

const S = "ses_1";
const ev = (type: string, properties: Record<string, unknown>) => ({ id: "evt", type, properties }) as unknown as Event;
const msg = (id: string, role: string, sessionID = S) => ev("message.updated", { info: { id, role, sessionID, time: { created: 0 } } });
const part = (id: string, messageID: string, type: string, text = "", sessionID = S) => ev("message.part.updated", { part: { id, messageID, sessionID, type, text } });
const delta = (partID: string, messageID: string, d: string, sessionID = S) => ev("message.part.delta", { sessionID, messageID, partID, field: "text", delta: d });
const status = (type: string, sessionID = S) => ev("session.status", { sessionID, status: { type } });

function tracker() {
  const deltas: string[] = [];
  const t = new TurnTracker(S, (d) => deltas.push(d));
  t.submitted = true;
  return { t, deltas };
}

test("streams assistant text deltas in order and ends on idle after busy", () => {
  const { t, deltas } = tracker();
  for (const e of [msg("u1", "user"), part("up", "u1", "text", "hello"), status("busy"), msg("a1", "assistant"), part("p1", "a1", "text"), delta("p1", "a1", "Hel"), delta("p1", "a1", "lo"), part("p1", "a1", "text", "Hello"), status("idle")]) t.handle(e);
  assert.deepEqual(deltas, ["Hel", "lo"]);
  assert.equal(t.userMessageID, "u1");
  assert.deepEqual(t.finish, { state: "done" });
});

test("idle before our turn went busy does not end it", () => {
  const { t } = tracker();
  t.handle(ev("session.idle", { sessionID: S }));
  assert.equal(t.finish, undefined);
});

test("deltas of unknown parts are held until the part turns out to be text; reasoning is dropped", () => {
  const { t, deltas } = tracker();
  t.handle(msg("a1", "assistant"));
  t.handle(delta("r1", "a1", "thinking..."));
  t.handle(delta("p1", "a1", "An"));
  t.handle(part("r1", "a1", "reasoning"));
  t.handle(part("p1", "a1", "text"));
  t.handle(delta("p1", "a1", "swer"));
  assert.deepEqual(deltas, ["An", "swer"]);
});

test("the user's own text and other sessions are never streamed", () => {
  const { t, deltas } = tracker();
  t.handle(msg("u1", "user"));
  t.handle(part("up", "u1", "text"));
  t.handle(delta("up", "u1", "my prompt"));
  t.handle(part("x", "m9", "text", "", "ses_other"));
  t.handle(delta("x", "m9", "elsewhere", "ses_other"));
  assert.deepEqual(deltas, []);
});

test("a second text part is separated, and the final text fills a gap the stream missed", () => {
  const { t, deltas } = tracker();
  t.handle(msg("a1", "assistant"));
  t.handle(part("p1", "a1", "text"));
  t.handle(delta("p1", "a1", "one"));
  t.handle(msg("a2", "assistant"));
  t.handle(part("p2", "a2", "text"));
  t.handle(delta("p2", "a2", "tw"));
  t.handle(part("p2", "a2", "text", "two")); // the "o" delta was lost
  assert.equal(deltas.join(""), `one${PART_SEPARATOR}two`);
});

test("session.error ends the turn at once; an abort is told apart", () => {
  const { t } = tracker();
  t.handle(ev("session.error", { sessionID: S, error: { name: "APIError", data: { message: "boom", statusCode: 500 } } }));
  assert.deepEqual(t.finish, { state: "error", detail: "APIError (HTTP 500): boom" });
  const b = tracker().t;
  b.handle(ev("session.error", { sessionID: S, error: { name: "MessageAbortedError", data: { message: "aborted" } } }));
  assert.equal(b.finish?.state, "aborted");
});

test("a permission or question in the session or a sub-session ends the turn at once", () => {
  const { t } = tracker();
  t.handle(ev("session.created", { info: { id: "ses_child", parentID: S } }));
  t.handle(ev("permission.asked", { id: "per_1", sessionID: "ses_child", permission: "bash", patterns: ["rm -rf build"], metadata: {}, always: [] }));
  assert.equal(t.finish?.state, "waiting");
  assert.match(t.finish?.detail ?? "", /bash \(rm -rf build\)/);
  const q = tracker().t;
  q.handle(ev("question.asked", { id: "que_1", sessionID: S, questions: [{ question: "Which DB?", header: "db", options: [] }] }));
  assert.match(q.finish?.detail ?? "", /Which DB\?/);
});

test("reconcile sends only the missing tail, and refuses a reply that diverges", () => {
  const { t, deltas } = tracker();
  t.handle(msg("a1", "assistant"));
  t.handle(part("p1", "a1", "text"));
  t.handle(delta("p1", "a1", "Hello"));
  assert.equal(t.reconcile("Hello world"), true);
  assert.deepEqual(deltas, ["Hello", " world"]);
  assert.equal(t.reconcile("Different"), false);
});

test("replyText takes the assistant messages answering the user message", () => {
  const m = (id: string, role: "user" | "assistant", parentID: string | undefined, texts: string[]) => ({
    info: { id, role, parentID, time: { created: 0 } } as never,
    parts: texts.map((text, i) => ({ id: `${id}-${i}`, type: "text", text }) as never),
  });
  const messages = [m("u0", "user", undefined, ["old"]), m("a0", "assistant", "u0", ["old reply"]), m("u1", "user", undefined, ["new"]), m("a1", "assistant", "u1", ["step one"]), m("a2", "assistant", "u1", ["step two"])];
  assert.equal(replyText(messages, "u1"), `step one${PART_SEPARATOR}step two`);
  assert.equal(replyText(messages), `step one${PART_SEPARATOR}step two`, "defaults to the newest user message");
});

/**
 * One prompt turn on an opencode session, observed through its event stream.
 *
 * Order matters, and is where the tool we replace lost text: we subscribe to `/event` and wait for
 * `server.connected` *before* submitting the prompt, so no delta can precede our subscription. The turn
 * ends on the first of: `session.idle` for the session (done), `session.error` (returned at once), a
 * permission or question prompt in the session or one of its sub-sessions (returned at once, saying
 * what waits), the deadline (text so far, turn still running), or the caller's abort.
 *
 * Streaming: only text parts of assistant messages of the session are streamed (not the user's echo,
 * not reasoning, not sub-agents). Deltas that arrive before we know a part's type are held until its
 * `message.part.updated` says "text". When the turn ends, the reply is read back from the API and any
 * tail the stream did not deliver (after a reconnect) is sent as a last delta, so the deltas always add
 * up to exactly the final reply.
 */
import type { Event, Message, Part } from "@opencode-ai/sdk/v2";
import { silentLogger, type Logger } from "../../shared/logger.js";
import { retry, sleep } from "../../shared/retry.js";
import type { OpencodeClient } from "./client.js";

export type TurnOutcome =
  | { state: "done"; reply: string }
  | { state: "submitted" }
  | { state: "error"; reply: string; error: string }
  | { state: "aborted"; reply: string }
  | { state: "waiting"; reply: string; waiting: string }
  | { state: "timeout"; reply: string };

export interface TurnOptions {
  client: OpencodeClient;
  sessionID: string;
  text: string;
  agent?: string;
  model?: { providerID: string; modelID: string };
  /** Give up waiting (the turn keeps running) after this long. */
  timeoutMs: number;
  /** false: return as soon as opencode accepted the prompt. */
  wait: boolean;
  /** The caller went away (MCP request cancelled). */
  signal?: AbortSignal;
  onDelta?: (delta: string) => void;
  logger?: Logger;
  /** Bound on subscribing, submitting and each reconnect attempt. Default CONNECT_TIMEOUT_MS. */
  connectTimeoutMs?: number;
  /** A subscription the caller opened early (in parallel with its own lookups); the turn closes it. */
  feed?: EventFeed;
  /**
   * The instance's client as registered now. A dropped stream usually means the tunnel reconnected, on a
   * new socket or port: re-subscribing through the old client would knock on a door that is gone.
   */
  currentClient?: () => OpencodeClient | undefined;
}

/**
 * How long subscribing to an instance's events or submitting a prompt may take. A dead tunnel is usually
 * known before a send (the health monitor marks it offline and send refuses at once), so this only has
 * to catch one that dies at that very moment; a live machine under load (the chaos suite's 20 instances
 * on two cores) can take well over 10 s to answer and must not be given up on.
 */
export const CONNECT_TIMEOUT_MS = 30_000;

/** Separator between consecutive text parts, in the streamed deltas and in the final reply alike. */
export const PART_SEPARATOR = "\n\n";

interface Finish {
  state: "done" | "error" | "aborted" | "waiting";
  detail?: string;
}

/** Follows one session's events and turns them into deltas and an end state. */
export class TurnTracker {
  readonly sessionID: string;
  readonly family = new Set<string>();
  readonly #roles = new Map<string, Message["role"]>();
  readonly #partTypes = new Map<string, Part["type"]>();
  readonly #held = new Map<string, string[]>();
  readonly #partText = new Map<string, string>();
  readonly #onDelta: (delta: string) => void;
  #streamed = "";
  #partCount = 0;
  submitted = false;
  sawBusy = false;
  userMessageID: string | undefined;
  finish: Finish | undefined;
  #resolveFinish!: (f: Finish) => void;
  readonly finished: Promise<Finish>;

  constructor(sessionID: string, onDelta: (delta: string) => void = () => {}) {
    this.sessionID = sessionID;
    this.family.add(sessionID);
    this.#onDelta = onDelta;
    this.finished = new Promise((resolve) => (this.#resolveFinish = resolve));
  }

  get streamed(): string {
    return this.#streamed;
  }

  end(f: Finish): void {
    if (this.finish) return;
    this.finish = f;
    this.#resolveFinish(f);
  }

  #emit(partID: string, delta: string): void {
    if (!delta || this.finish) return;
    let out = delta;
    if (!this.#partText.has(partID)) {
      if (this.#partCount > 0) out = PART_SEPARATOR + delta;
      this.#partCount += 1;
    }
    this.#partText.set(partID, (this.#partText.get(partID) ?? "") + delta);
    this.#streamed += out;
    this.#onDelta(out);
  }

  /** Sends what the stream missed so that the deltas sum to `finalReply`; returns false if they cannot. */
  reconcile(finalReply: string): boolean {
    if (!finalReply.startsWith(this.#streamed)) return false;
    const tail = finalReply.slice(this.#streamed.length);
    if (tail) {
      this.#streamed = finalReply;
      this.#onDelta(tail);
    }
    return true;
  }

  handle(ev: Event): void {
    switch (ev.type) {
      case "session.created": {
        const info = ev.properties.info;
        if (info.parentID && this.family.has(info.parentID)) this.family.add(info.id);
        return;
      }
      case "message.updated": {
        const info = ev.properties.info;
        this.#roles.set(info.id, info.role);
        if (info.role === "user" && info.sessionID === this.sessionID && this.submitted && !this.userMessageID) this.userMessageID = info.id;
        return;
      }
      case "message.part.updated": {
        const part = ev.properties.part;
        if (part.sessionID !== this.sessionID) return;
        this.#partTypes.set(part.id, part.type);
        const held = this.#held.get(part.id);
        this.#held.delete(part.id);
        if (part.type !== "text" || this.#roles.get(part.messageID) === "user") return;
        for (const d of held ?? []) this.#emit(part.id, d);
        // A part's full text also arrives here; anything beyond what the deltas carried is sent now.
        const sent = this.#partText.get(part.id) ?? "";
        if (part.text.length > sent.length && part.text.startsWith(sent)) this.#emit(part.id, part.text.slice(sent.length));
        return;
      }
      case "message.part.delta": {
        const p = ev.properties;
        if (p.sessionID !== this.sessionID || p.field !== "text" || this.#roles.get(p.messageID) === "user") return;
        const type = this.#partTypes.get(p.partID);
        if (type === "text") this.#emit(p.partID, p.delta);
        else if (type === undefined) this.#held.set(p.partID, [...(this.#held.get(p.partID) ?? []), p.delta]);
        return;
      }
      case "session.status": {
        if (ev.properties.sessionID !== this.sessionID) return;
        const status = ev.properties.status;
        if (status.type === "busy" || status.type === "retry") this.sawBusy = this.submitted;
        else if (status.type === "idle" && this.sawBusy) this.end({ state: "done" });
        return;
      }
      case "session.idle":
        if (ev.properties.sessionID === this.sessionID && this.sawBusy) this.end({ state: "done" });
        return;
      case "session.error": {
        const { sessionID, error } = ev.properties;
        if (!this.submitted || (sessionID && !this.family.has(sessionID))) return;
        if (!sessionID) return; // errors of no session are not this turn's
        if (error?.name === "MessageAbortedError") this.end({ state: "aborted" });
        else this.end({ state: "error", detail: describeError(error) });
        return;
      }
      case "permission.asked": {
        const p = ev.properties;
        if (!this.family.has(p.sessionID)) return;
        const what = p.patterns.length ? `${p.permission} (${p.patterns.join(", ")})` : p.permission;
        this.end({ state: "waiting", detail: `permission to run ${what}, request ${p.id}` });
        return;
      }
      case "question.asked": {
        const p = ev.properties;
        if (!this.family.has(p.sessionID)) return;
        const qs = p.questions.map((q) => q.question).join(" / ");
        this.end({ state: "waiting", detail: `an answer to the question "${qs}", request ${p.id}` });
        return;
      }
      default:
        return;
    }
  }
}

export function describeError(error: unknown): string {
  if (!error || typeof error !== "object") return "unknown error";
  const e = error as { name?: string; data?: { message?: string; statusCode?: number } };
  const msg = e.data?.message ?? "";
  const status = e.data?.statusCode ? ` (HTTP ${e.data.statusCode})` : "";
  return `${e.name ?? "Error"}${status}${msg ? `: ${msg}` : ""}`;
}

/** A live `/event` subscription. Events before a handler is set are dropped: nothing is submitted yet. */
export interface EventFeed {
  connected: Promise<void>;
  ended: Promise<unknown>;
  setHandler(handler: (ev: Event) => void): void;
  close(): void;
}

/**
 * Opens `/event`. No silent reconnects (the SDK's own retry is off): an end is reported through
 * `ended`, so a turn knows it may have missed events and can resynchronise.
 */
export function openEventFeed(client: OpencodeClient, parent?: AbortSignal): EventFeed {
  const ac = new AbortController();
  const onParentAbort = () => ac.abort();
  parent?.addEventListener("abort", onParentAbort, { once: true });
  let handler: (ev: Event) => void = () => {};
  let connect!: () => void;
  let fail!: (err: unknown) => void;
  const connected = new Promise<void>((resolve, reject) => {
    connect = resolve;
    fail = reject;
  });
  connected.catch(() => {});
  let lastError: unknown;
  const ended = (async () => {
    try {
      const { stream } = await client.event.subscribe(undefined, {
        signal: ac.signal,
        sseMaxRetryAttempts: 1,
        onSseError: (err: unknown) => (lastError = err),
      });
      for await (const ev of stream as AsyncIterable<Event>) {
        if (ev.type === "server.connected") connect();
        handler(ev);
      }
    } catch (err) {
      lastError = err;
    } finally {
      parent?.removeEventListener("abort", onParentAbort);
      fail(new Error(`event stream closed${lastError ? `: ${(lastError as Error).message ?? lastError}` : ""}`, { cause: lastError }));
    }
    return lastError;
  })();
  return { connected, ended, setHandler: (h) => (handler = h), close: () => ac.abort() };
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error(`${what} took longer than ${ms} ms`), { name: "TimeoutError" })), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Text of the assistant's reply to `userMessageID` (or to the newest user message). */
export function replyText(messages: Array<{ info: Message; parts: Part[] }>, userMessageID?: string): string {
  let anchor = userMessageID;
  if (!anchor || !messages.some((m) => m.info.id === anchor)) {
    anchor = [...messages].reverse().find((m) => m.info.role === "user")?.info.id;
  }
  return messages
    .filter((m) => m.info.role === "assistant" && m.info.parentID === anchor)
    .flatMap((m) => m.parts)
    .filter((p): p is Extract<Part, { type: "text" }> => p.type === "text" && !p.synthetic && !p.ignored && p.text.length > 0)
    .map((p) => p.text)
    .join(PART_SEPARATOR);
}

/** Submits `text` and follows the turn to its end. Throws only when the prompt could not be submitted. */
export async function runTurn(opts: TurnOptions): Promise<TurnOutcome> {
  const log = opts.logger ?? silentLogger;
  const { sessionID } = opts;
  let client = opts.client;
  const deadline = Date.now() + opts.timeoutMs;
  const connectTimeout = opts.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
  const tracker = new TurnTracker(sessionID, opts.onDelta);
  let feed = opts.feed ?? openEventFeed(client, opts.signal);
  feed.setHandler((ev) => tracker.handle(ev));
  let resynced = false;
  try {
    await within(feed.connected, Math.min(connectTimeout, opts.timeoutMs), "subscribing to the instance's events");
    tracker.submitted = true;
    await client.session.promptAsync(
      {
        sessionID,
        parts: [{ type: "text", text: opts.text }],
        ...(opts.agent ? { agent: opts.agent } : {}),
        ...(opts.model ? { model: opts.model } : {}),
      },
      { signal: AbortSignal.timeout(connectTimeout) },
    );
    if (!opts.wait) return { state: "submitted" };

    const aborted = new Promise<"cancelled">((resolve) => {
      if (opts.signal?.aborted) resolve("cancelled");
      opts.signal?.addEventListener("abort", () => resolve("cancelled"), { once: true });
    });
    while (!tracker.finish) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), remaining)));
      const what = await Promise.race([tracker.finished, feed.ended.then(() => "ended" as const), timeout, aborted]);
      clearTimeout(timer);
      if (what !== "ended") break; // finished, timed out or cancelled
      // The stream dropped mid-turn (tunnel blip, instance restart). Reconnect, then ask whether the
      // turn ended while we were away; deltas we missed come back through reconcile() at the end.
      log.warn("event stream dropped during a turn; reconnecting", { session: sessionID });
      try {
        feed = await retry(
          async () => {
            const via = opts.currentClient?.() ?? client;
            const next = openEventFeed(via, opts.signal);
            next.setHandler((ev) => tracker.handle(ev));
            try {
              await within(next.connected, Math.max(1, Math.min(connectTimeout, deadline - Date.now())), "re-subscribing");
            } catch (err) {
              next.close();
              throw err;
            }
            client = via;
            return next;
          },
          { initialMs: 100, maxMs: 2_000, jitter: 0.2, attempts: Infinity, signal: AbortSignal.any([AbortSignal.timeout(Math.max(1, deadline - Date.now())), ...(opts.signal ? [opts.signal] : [])]), sleep },
        );
      } catch {
        break; // deadline or caller gone: report what we have
      }
      resynced = true;
      const status = await client.session.status(undefined, { signal: AbortSignal.timeout(connectTimeout) });
      const st = status.data?.[sessionID];
      if (!st || st.type === "idle") tracker.end({ state: "done" });
    }

    const finish = tracker.finish;
    if (!finish) {
      return { state: "timeout", reply: tracker.streamed };
    }
    if (finish.state === "done") {
      // An unbroken stream already holds the whole reply: every text part's final text arrives in
      // message.part.updated before the session goes idle, and the tracker reconciled with it. Only
      // after a reconnect (events possibly missed) is the reply read back from the API.
      if (!resynced) return { state: "done", reply: tracker.streamed };
      const { data } = await client.session.messages({ sessionID, limit: 50 }, { signal: AbortSignal.timeout(connectTimeout) });
      const reply = replyText(data ?? [], tracker.userMessageID);
      if (!tracker.reconcile(reply)) log.warn("streamed text diverged from the final reply", { session: sessionID });
      return { state: "done", reply };
    }
    if (finish.state === "error") return { state: "error", reply: tracker.streamed, error: finish.detail ?? "unknown error" };
    if (finish.state === "aborted") return { state: "aborted", reply: tracker.streamed };
    return { state: "waiting", reply: tracker.streamed, waiting: finish.detail ?? "input" };
  } finally {
    feed.close();
  }
}

/**
 * Turns while faults happen: a driver per instance that sends `turn <id>` prompts one after another for
 * as long as it runs, and the ledger check that compares what the model produced with what `read`
 * returns: every reply produced appears exactly once, and every `send` that succeeded returned its reply.
 */
import { readFileSync } from "node:fs";
import type { McpLink } from "./world.js";

export interface TurnRecord {
  id: string;
  startedAt: number;
  endedAt: number;
  ok: boolean;
  /** The reply send returned, or its error text. */
  text: string;
  /** send said it succeeded but did not return this turn's reply. */
  wrongReply: boolean;
  /** The session send reported. */
  session?: string;
}

export const replyFor = (id: string) => `Reply to: turn <${id}>`;

/** Pause between turns after a failed one, so a driver does not spin while an instance is down. */
const RETRY_PAUSE_MS = 250;
/** A new session every this many turns: read shows at most 200 messages of one session. */
const TURNS_PER_SESSION = 40;

export class TurnDriver {
  readonly records: TurnRecord[] = [];
  #n = 0;
  #running = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;

  constructor(
    private readonly mcp: McpLink,
    readonly instance: string,
    readonly tag: string,
  ) {}

  /**
   * Starts turns in a new session, and again every TURNS_PER_SESSION turns. A new-session send is never
   * repeated: if it fails, the next turn goes to the instance's latest session, which is the new one if it
   * was created. So every turn lands in a session some successful turn reports (sessions()).
   */
  start(): void {
    this.#running = true;
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    let fresh = true;
    let inSession = 0;
    while (this.#running) {
      const id = `${this.tag}-${++this.#n}`;
      const startedAt = Date.now();
      const r = await this.mcp.call("send", { instance: this.instance, message: `turn <${id}>`, ...(fresh ? { new_session: true } : {}) }, 120_000);
      fresh = false;
      const ok = r.ok && r.text.includes(replyFor(id));
      const session = typeof r.structured?.session === "string" ? r.structured.session : undefined;
      this.records.push({ id, startedAt, endedAt: Date.now(), ok, text: r.text, wrongReply: r.ok && !ok, ...(session ? { session } : {}) });
      if (ok && ++inSession >= TURNS_PER_SESSION) {
        fresh = true;
        inSession = 0;
      }
      if (!ok && this.#running) await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, RETRY_PAUSE_MS);
      });
    }
  }

  /** Stops after the turn in flight. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#wake?.();
    await this.#loop;
  }

  /** Sessions that successful turns reported, in order. */
  sessions(): string[] {
    return [...new Set(this.records.filter((r) => r.ok && r.session).map((r) => r.session!))];
  }

  okCount(): number {
    return this.records.filter((r) => r.ok).length;
  }

  /** The first turn that started at or after `t` and succeeded. */
  firstOkAfter(t: number): TurnRecord | undefined {
    return this.records.find((r) => r.startedAt >= t && r.ok);
  }
}

export interface LedgerCheck {
  produced: number;
  lost: string[];
  duplicated: string[];
}

/** Turn ids the model produced a reply for (those `wanted` accepts), with how often each was produced. */
export function producedReplies(ledgerFile: string, wanted: (id: string) => boolean): Map<string, number> {
  const counts = new Map<string, number>();
  let text = "";
  try {
    text = readFileSync(ledgerFile, "utf8");
  } catch {
    return counts;
  }
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const { reply } = JSON.parse(line) as { reply: string };
    const m = /^Reply to: turn <([^>]+)>$/.exec(reply);
    if (m && wanted(m[1]!)) counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + 1);
  }
  return counts;
}

function occurrences(haystack: string, needle: string): number {
  let n = 0;
  for (let i = haystack.indexOf(needle); i >= 0; i = haystack.indexOf(needle, i + needle.length)) n++;
  return n;
}

/**
 * After a fault: `read` each of the driver's sessions and compare. Lost: produced by the
 * model but missing from read, or a successful send that did not return its own reply. Duplicated: produced
 * twice (the prompt was submitted twice) or shown twice.
 */
export async function checkLedger(mcp: McpLink, driver: TurnDriver, ledgerFile: string): Promise<LedgerCheck & { readError?: string }> {
  const produced = producedReplies(ledgerFile, (id) => id.startsWith(`${driver.tag}-`));
  let text = "";
  let readError: string | undefined;
  for (const session of driver.sessions()) {
    const read = await mcp.call("read", { instance: driver.instance, session, message_limit: 200 }, 30_000);
    if (read.ok) text += `${read.text}\n`;
    else readError = read.text;
  }
  const lost = new Set<string>();
  const duplicated = new Set<string>();
  for (const [id, count] of produced) {
    if (count > 1) duplicated.add(id);
    const shown = occurrences(text, replyFor(id));
    if (shown === 0) lost.add(id);
    if (shown > 1) duplicated.add(id);
  }
  for (const r of driver.records) if ((r.ok && !produced.has(r.id)) || r.wrongReply) lost.add(r.id);
  return { produced: produced.size, lost: [...lost], duplicated: [...duplicated], ...(readError ? { readError } : {}) };
}

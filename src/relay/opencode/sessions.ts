/**
 * Which session of an instance a tool call means: the one named (id, id prefix or title) or, as the
 * tool we replace did, the most recently updated top-level session.
 */
import type { Session } from "@opencode-ai/sdk/v2";
import { listWords, matchName } from "../instances/resolve-name.js";
import type { OpencodeClient } from "./client.js";

export type SessionPick = { ok: true; session: Session } | { ok: false; message: string } | { ok: true; session: undefined };

/** Sessions considered when a name is given; more than a chat model would ever scroll through. */
const SEARCH_LIMIT = 200;

function label(s: Session): string {
  return `"${s.title}" (${s.id})`;
}

/**
 * Picks a session. With no `query`, the most recent top-level session, or `session: undefined` when
 * the instance has none yet (the caller decides whether to create one).
 */
export async function pickSession(client: OpencodeClient, query: string | undefined, signal?: AbortSignal): Promise<SessionPick> {
  if (!query) {
    const { data } = await client.session.list({ roots: true, limit: 1 }, { signal });
    return { ok: true, session: newest(data ?? []) };
  }
  const { data } = await client.session.list({ limit: SEARCH_LIMIT }, { signal });
  const sessions = data ?? [];
  const q = query.trim();
  const byId = sessions.find((s) => s.id === q);
  if (byId) return { ok: true, session: byId };
  const prefixed = sessions.filter((s) => s.id.startsWith(q));
  if (prefixed.length === 1) return { ok: true, session: prefixed[0]! };
  if (prefixed.length > 1) return { ok: false, message: `Session id prefix "${q}" matches ${listWords(prefixed.map(label))}; give more of the id.` };
  const byTitle = matchName(q, sessions, (s) => s.title);
  if (byTitle.kind === "found") return { ok: true, session: byTitle.item };
  if (byTitle.kind === "ambiguous") return { ok: false, message: `Session "${q}" matches ${listWords(byTitle.candidates.slice(0, 10).map(label))}; say which (an id works).` };
  const recent = sessions.slice(0, 5).map(label);
  return {
    ok: false,
    message: sessions.length
      ? `No session matches "${q}". Recent sessions: ${listWords(recent)}. Omit "session" to use the most recent one, or set new_session.`
      : `No session matches "${q}": the instance has no sessions yet. Omit "session" to start one.`,
  };
}

function newest(sessions: Session[]): Session | undefined {
  return sessions.reduce<Session | undefined>((best, s) => (!best || s.time.updated > best.time.updated ? s : best), undefined);
}

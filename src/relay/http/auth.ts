/**
 * Bearer tokens for the HTTP endpoint. Several may be configured at once (rotation: add the new one,
 * move clients over, remove the old one); each has a label that identifies the caller in logs and in
 * the audit trail. The token itself is never logged, audited or quoted in an error.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { ConfigError } from "../../shared/env.js";

export interface BearerToken {
  /** Who holds it: the `label=` part, or `token#N` by position in the list. */
  label: string;
  token: string;
}

/** Short tokens are guessable; 16 characters is also what catches a token misread as `label=token`. */
export const MIN_TOKEN_LENGTH = 16;
const LABEL = /^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}$/;
// Visible ASCII: what fits in an Authorization header without quoting.
const TOKEN_CHARS = /^[\x21-\x7e]+$/;

/**
 * Parses MCP_BEARER_TOKEN: a comma-separated list of `token` or `label=token`. An entry whose part
 * before the first `=` is not a label is a bare token, so a token containing `=` needs a label.
 * Errors name the entry by position or label, never by value.
 */
export function parseBearerTokens(raw: string): BearerToken[] {
  const entries = raw.split(",").map((e) => e.trim()).filter(Boolean);
  if (entries.length === 0) throw new ConfigError("MCP_BEARER_TOKEN: no token in the list (comma-separated token or label=token)");
  const out: BearerToken[] = [];
  entries.forEach((entry, i) => {
    const eq = entry.indexOf("=");
    const labelled = eq > 0 && eq < entry.length - 1 && LABEL.test(entry.slice(0, eq));
    const label = labelled ? entry.slice(0, eq) : `token#${i + 1}`;
    const token = labelled ? entry.slice(eq + 1) : entry;
    const where = `MCP_BEARER_TOKEN: entry ${i + 1}${labelled ? ` (${label})` : ""}`;
    if (!TOKEN_CHARS.test(token)) throw new ConfigError(`${where}: a token may only contain visible ASCII characters (no spaces)`);
    if (token.length < MIN_TOKEN_LENGTH) {
      throw new ConfigError(
        `${where}: the token is shorter than ${MIN_TOKEN_LENGTH} characters; use a long random one (openssl rand -hex 32). A token containing "=" needs a label: label=token`,
      );
    }
    const sameLabel = out.findIndex((t) => t.label === label);
    if (sameLabel >= 0) throw new ConfigError(`${where}: label ${label} is used twice; labels must identify one token each`);
    const sameToken = out.findIndex((t) => t.token === token);
    if (sameToken >= 0) throw new ConfigError(`${where}: same token as entry ${sameToken + 1}`);
    out.push({ label, token });
  });
  return out;
}

export type AuthCheck = { ok: true; label: string } | { ok: false; reason: "missing" | "invalid" };

/** Checks `Authorization: Bearer …` against every configured token, in constant time. */
export class BearerAuth {
  readonly #entries: ReadonlyArray<{ label: string; digest: Buffer }>;

  constructor(tokens: readonly BearerToken[]) {
    this.#entries = tokens.map((t) => ({ label: t.label, digest: sha256(t.token) }));
  }

  /** True when no token is configured: every request is let in (loopback binds only). */
  get open(): boolean {
    return this.#entries.length === 0;
  }

  check(authorization: string | undefined): AuthCheck {
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? "");
    if (!m) return { ok: false, reason: "missing" };
    // Hashing both sides gives equal-length buffers whatever was sent, and every configured token is
    // compared, so the time taken says neither which token nor how much of it matched.
    const presented = sha256(m[1]!);
    let label: string | undefined;
    for (const e of this.#entries) {
      const same = timingSafeEqual(presented, e.digest);
      if (same && label === undefined) label = e.label;
    }
    return label === undefined ? { ok: false, reason: "invalid" } : { ok: true, label };
  }
}

function sha256(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}

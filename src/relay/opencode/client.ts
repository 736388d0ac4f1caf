/**
 * The one place that builds opencode SDK clients: every call to an instance goes through here, with
 * its credentials and, for tunnelled Unix sockets, our socket-capable fetch.
 */
import { createOpencodeClient, type OpencodeClient } from "@opencode-ai/sdk/v2";
import type { InstanceEndpoint } from "../transports/transport.js";
import { createHttpFetch, errorCode, REFUSED_CODES, type HttpAgents } from "./http-fetch.js";

export type { OpencodeClient };

export function basicAuthHeader(auth: { username: string; password: string }): string {
  return `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString("base64")}`;
}

export function createInstanceClient(endpoint: InstanceEndpoint, agents?: HttpAgents): OpencodeClient {
  return createOpencodeClient({
    baseUrl: endpoint.baseUrl,
    fetch: createHttpFetch({ ...(endpoint.socketPath ? { socketPath: endpoint.socketPath } : {}), ...(agents ? { agents } : {}) }),
    headers: endpoint.auth ? { authorization: basicAuthHeader(endpoint.auth) } : {},
    throwOnError: true,
  });
}

/** Why a call to an instance failed, in the terms the health monitor and the tools act on. */
export type FailureKind = "refused" | "timeout" | "unauthorized" | "bad-response";

export function classifyFailure(err: unknown): FailureKind {
  const name = (err as { name?: string })?.name;
  if (name === "TimeoutError" || name === "AbortError") return "timeout";
  const status = ((err as { cause?: { status?: number } })?.cause)?.status;
  if (status === 401 || status === 403) return "unauthorized";
  const code = errorCode(err);
  if (code && REFUSED_CODES.has(code)) return "refused";
  if (code === "ETIMEDOUT") return "timeout";
  return "bad-response";
}

export function describeFailure(kind: FailureKind, err: unknown): string {
  switch (kind) {
    case "refused":
      return `connection refused (${errorCode(err) ?? "closed"}): the tunnel or opencode is gone`;
    case "timeout":
      return "no answer in time: the link is slow or half-open";
    case "unauthorized":
      return "opencode refused our credentials (HTTP 401): the registration's password does not match";
    default:
      return `unexpected answer: ${(err as Error)?.message ?? String(err)}`;
  }
}

export type HealthResult = { ok: true; version: string } | { ok: false; kind: FailureKind; message: string };

/** `GET /global/health`. Only a JSON `{healthy:true}` counts: opencode answers unknown paths with HTML 200. */
export async function probeHealth(client: OpencodeClient, timeoutMs: number): Promise<HealthResult> {
  try {
    const res = await client.global.health({ signal: AbortSignal.timeout(timeoutMs) });
    const data = res.data as unknown;
    if (!data || typeof data !== "object" || (data as { healthy?: unknown }).healthy !== true) {
      return { ok: false, kind: "bad-response", message: "health endpoint did not answer {healthy:true}: not an opencode server?" };
    }
    return { ok: true, version: String((data as { version?: unknown }).version ?? "unknown") };
  } catch (err) {
    const kind = classifyFailure(err);
    return { ok: false, kind, message: describeFailure(kind, err) };
  }
}

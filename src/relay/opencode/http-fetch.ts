/**
 * A WHATWG `fetch` over `node:http`, handed to the opencode SDK. Node's own fetch cannot dial a Unix
 * socket without the undici package, and instances behind `ssh -R /path.sock:…` are exactly that. It
 * also pools keep-alive connections per instance, which takes a TCP (and through a tunnel, an SSH
 * channel) setup off every call.
 */
import http from "node:http";
import https from "node:https";
import { Readable } from "node:stream";

export interface HttpAgents {
  "http:": http.Agent;
  "https:": https.Agent;
}

/**
 * Keep-alive pools. One pair serves every instance: an agent pools per host, port and socket path, so
 * sharing costs nothing and saves a pair of agents per instance (1000 instances, 1000 pairs).
 */
export function createHttpAgents(): HttpAgents {
  // At most 4 idle connections kept per instance (Node's default keeps 256): enough for a send's
  // parallel calls, and the relay's descriptors stay bounded by the number of instances.
  return {
    "http:": new http.Agent({ keepAlive: true, maxSockets: 32, maxFreeSockets: 4 }),
    "https:": new https.Agent({ keepAlive: true, maxSockets: 32, maxFreeSockets: 4 }),
  };
}

export interface HttpFetchOptions {
  /** Dial this Unix socket instead of the URL's host and port. */
  socketPath?: string;
  agents?: HttpAgents;
}

const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);

/** Errors whose code says the peer is not there at all (as opposed to slow). */
export const REFUSED_CODES = new Set(["ECONNREFUSED", "ENOENT", "ECONNRESET", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "ENOTSOCK", "EACCES"]);

/** The system error code behind a fetch failure, walking `cause` chains. */
export function errorCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

export function createHttpFetch(opts: HttpFetchOptions = {}): typeof fetch {
  const agents = opts.agents ?? createHttpAgents();

  const once = async (request: Request, body: Buffer | undefined): Promise<Response> => {
    const url = new URL(request.url);
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new TypeError(`only http: and https: URLs are supported, not ${url.protocol}`);
    const proto = url.protocol === "https:" && !opts.socketPath ? "https:" : "http:";
    const headers: Record<string, string> = {};
    request.headers.forEach((value, key) => {
      headers[key] = value;
    });
    if (body) headers["content-length"] = String(body.length);
    return await new Promise<Response>((resolve, reject) => {
      const signal = request.signal;
      if (signal?.aborted) return reject(signal.reason);
      const req = (proto === "https:" ? https : http).request({
        agent: agents[proto],
        method: request.method,
        path: `${url.pathname}${url.search}`,
        headers,
        ...(opts.socketPath ? { socketPath: opts.socketPath } : { host: url.hostname.replace(/^\[|\]$/g, ""), port: url.port || (proto === "https:" ? 443 : 80) }),
      });
      const onAbort = () => req.destroy(signal.reason instanceof Error ? signal.reason : new Error("aborted"));
      signal?.addEventListener("abort", onAbort, { once: true });
      req.on("error", (err) => {
        signal?.removeEventListener("abort", onAbort);
        reject(Object.assign(err, { reusedSocket: req.reusedSocket }));
      });
      req.on("response", (res) => {
        res.on("close", () => signal?.removeEventListener("abort", onAbort));
        const out = new Headers();
        for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) out.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
        const status = res.statusCode ?? 500;
        const nullBody = NULL_BODY_STATUS.has(status) || request.method === "HEAD";
        if (nullBody) res.resume();
        resolve(
          new Response(nullBody ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), {
            status,
            statusText: res.statusMessage ?? "",
            headers: out,
          }),
        );
      });
      req.end(body);
    });
  };

  return (async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const request = input instanceof Request && !init ? input : new Request(input, init);
    const body = request.body ? Buffer.from(await request.arrayBuffer()) : undefined;
    try {
      return await once(request, body);
    } catch (err) {
      // A pooled keep-alive socket the server has just closed fails on reuse; that is not the peer being
      // gone. Node's docs recommend one retry for idempotent requests in exactly this case.
      if ((err as { reusedSocket?: boolean }).reusedSocket && errorCode(err) === "ECONNRESET" && request.method === "GET") {
        return await once(request, body);
      }
      throw err;
    }
  }) as typeof fetch;
}

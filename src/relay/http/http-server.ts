/**
 * `opencode-mcp --http`: the same tools over MCP Streamable HTTP, to several clients at once. One
 * StreamableHTTPServerTransport and one McpServer per MCP session, all over the one instance directory,
 * audit log and shutdown signal.
 *
 * Every request passes, in this order: the Host check (DNS rebinding), the Origin check, routing
 * (`/healthz` and `/readyz` need no token and name no instance), the bearer token (its label becomes
 * `req.auth.clientId`, which the SDK hands to tools as `extra.authInfo`, so audit lines say who called),
 * the body bound, then the session.
 */
import { randomUUID } from "node:crypto";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { ErrorCode, isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import type { Logger } from "../../shared/logger.js";
import { SHUTTING_DOWN_MESSAGE, type CallTracker } from "../call-tracker.js";
import { hostPort, type HttpConfig } from "../config.js";
import { createServer as createRelayServer, type RelayServer } from "../server.js";
import type { ToolDeps } from "../tools/tool-result.js";
import { BearerAuth } from "./auth.js";
import { hostAllowed, originAllowed, readBody } from "./guards.js";

/** Open MCP sessions at once; each holds a small McpServer. Past it, new sessions get 503. */
export const MAX_SESSIONS = 1_000;
/** After the sessions are closed, how long their last responses get to be written out. */
const RESPONSE_FLUSH_MS = 2_000;
/** The JSON-RPC code the SDK's transport answers an unknown session with; ours says the same. */
const SESSION_NOT_FOUND = -32001;
/** Caller label when no token is configured (loopback binds only). */
export const ANONYMOUS = "anonymous";

export interface RelayHttpServerOptions {
  config: HttpConfig;
  deps: ToolDeps;
  tracker: CallTracker;
  logger: Logger;
  createServer?: (deps: ToolDeps) => RelayServer;
  now?: () => number;
}

interface Session {
  id?: string;
  /** The token label that opened it; no other token may use it. */
  caller: string;
  transport: StreamableHTTPServerTransport;
  relay: RelayServer;
  /** HTTP responses in progress (a running call, a listening GET stream): never idle while > 0. */
  open: number;
  lastActive: number;
}

export class RelayHttpServer {
  readonly #config: HttpConfig;
  readonly #deps: ToolDeps;
  readonly #tracker: CallTracker;
  readonly #log: Logger;
  readonly #createServer: (deps: ToolDeps) => RelayServer;
  readonly #now: () => number;
  readonly #auth: BearerAuth;
  readonly #server: http.Server;
  readonly #sessions = new Map<string, Session>();
  readonly #responses = new Set<ServerResponse>();
  /** Set by close() while it waits for the last responses to be written out. */
  #onResponsesDone: (() => void) | undefined;
  #listening = false;
  #closing = false;
  #closed: Promise<void> | undefined;
  #sweep: NodeJS.Timeout | undefined;

  constructor(opts: RelayHttpServerOptions) {
    this.#config = opts.config;
    this.#deps = opts.deps;
    this.#tracker = opts.tracker;
    this.#log = opts.logger.child({ component: "http" });
    this.#createServer = opts.createServer ?? createRelayServer;
    this.#now = opts.now ?? Date.now;
    this.#auth = new BearerAuth(opts.config.tokens);
    this.#server = http.createServer((req, res) => {
      this.#responses.add(res);
      res.once("close", () => {
        this.#responses.delete(res);
        if (this.#responses.size === 0) this.#onResponsesDone?.();
      });
      this.#handle(req, res).catch((err: unknown) => {
        this.#log.error("HTTP request failed", { err, method: req.method, path: pathOf(req) });
        if (!res.headersSent) rpcError(res, 500, ErrorCode.InternalError, "Internal server error");
        else res.destroy();
      });
    });
  }

  /** Binds MCP_HTTP_HOST:MCP_HTTP_PORT. Rejects with a sentence when it cannot. */
  async listen(): Promise<void> {
    const { host, port } = this.#config;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) =>
        reject(new Error(`cannot listen on ${hostPort(host, port)} (${err.code ?? err.message}); set MCP_HTTP_HOST/MCP_HTTP_PORT`, { cause: err }));
      this.#server.once("error", onError);
      this.#server.listen({ host, port }, () => {
        this.#server.off("error", onError);
        resolve();
      });
    });
    this.#listening = true;
    this.#server.on("error", (err) => this.#log.error("HTTP server error", { err }));
    const every = Math.min(60_000, Math.max(1_000, Math.floor(this.#config.sessionIdleMs / 2)));
    this.#sweep = setInterval(() => this.#expireIdle(), every);
    this.#sweep.unref();
    if (this.#config.allowedHosts === undefined) {
      this.#log.warn("the Host header is not checked on this non-loopback bind; set ALLOWED_HOSTS to the names clients use", { host });
    }
  }

  /** The MCP endpoint as a client on this machine reaches it. */
  get url(): string {
    const a = this.#server.address() as AddressInfo | null;
    return `http://${hostPort(a?.address ?? this.#config.host, a?.port ?? this.#config.port)}${this.#config.path}`;
  }

  /** Closes the listener; requests on open connections still reach their sessions (the tracker refuses new calls). */
  stopAccepting(): void {
    if (this.#closing) return;
    this.#closing = true;
    clearInterval(this.#sweep);
    // Resolves once every connection has ended (close() below drops the last ones).
    this.#closed = new Promise((resolve) => this.#server.close(() => resolve()));
  }

  /** Closes every session (their streams end), lets the last responses out, then drops every connection. */
  async close(): Promise<void> {
    this.stopAccepting();
    await Promise.allSettled([...this.#sessions.values()].map((s) => s.relay.cleanup()));
    this.#sessions.clear();
    if (this.#responses.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.#onResponsesDone = resolve;
        timer = setTimeout(resolve, RESPONSE_FLUSH_MS);
      });
      clearTimeout(timer);
    }
    this.#server.closeAllConnections();
    await this.#closed;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = pathOf(req);
    if (!hostAllowed(req.headers.host, this.#config.allowedHosts)) {
      this.#log.warn("refused: Host not allowed", { host: req.headers.host ?? "(none)", remote: req.socket.remoteAddress });
      return plain(res, 403, "Forbidden: Host not allowed\n");
    }
    if (!originAllowed(req.headers.origin, this.#config.allowedOrigins)) {
      this.#log.warn("refused: Origin not allowed", { origin: req.headers.origin, remote: req.socket.remoteAddress });
      return plain(res, 403, "Forbidden: Origin not allowed\n");
    }
    if (path === "/healthz" || path === "/readyz") return this.#probe(req, res, path);
    if (path !== this.#config.path) return plain(res, 404, "Not found\n");

    let caller = ANONYMOUS;
    if (!this.#auth.open) {
      const auth = this.#auth.check(req.headers.authorization);
      if (!auth.ok) {
        this.#log.warn("refused: bad or missing bearer token", { reason: auth.reason, remote: req.socket.remoteAddress });
        const challenge = auth.reason === "invalid" ? 'Bearer realm="opencode-relay", error="invalid_token"' : 'Bearer realm="opencode-relay"';
        return rpcError(res, 401, ErrorCode.ConnectionClosed, "Unauthorized: send Authorization: Bearer <token>", { "WWW-Authenticate": challenge });
      }
      caller = auth.label;
    }
    (req as IncomingMessage & { auth?: AuthInfo }).auth = { token: caller, clientId: caller, scopes: [] };
    if (!this.#deps.directory.started) return rpcError(res, 503, ErrorCode.ConnectionClosed, "The relay is starting; try again in a moment.", { "Retry-After": "1" });
    return this.#mcp(req, res, caller);
  }

  async #mcp(req: IncomingMessage, res: ServerResponse, caller: string): Promise<void> {
    const method = req.method ?? "";
    if (method !== "POST" && method !== "GET" && method !== "DELETE") {
      return rpcError(res, 405, ErrorCode.ConnectionClosed, "Method not allowed.", { Allow: "GET, POST, DELETE" });
    }
    const sid = req.headers["mcp-session-id"];
    if (Array.isArray(sid)) return rpcError(res, 400, ErrorCode.ConnectionClosed, "Bad Request: one Mcp-Session-Id header only");

    let body: unknown;
    if (method === "POST") {
      const read = await readBody(req, this.#config.maxBodyBytes);
      if (!read.ok) {
        if (read.reason === "aborted") return;
        this.#log.warn("refused: request body too large", { caller, limit: this.#config.maxBodyBytes });
        // Let the client finish sending so it reads the answer, then drop the connection.
        req.resume();
        return rpcError(res, 413, ErrorCode.InvalidRequest, `Request body larger than ${this.#config.maxBodyBytes} bytes (MCP_MAX_BODY_BYTES)`, { Connection: "close" });
      }
      try {
        body = JSON.parse(read.body.toString("utf8"));
      } catch {
        return rpcError(res, 400, ErrorCode.ParseError, "Parse error: invalid JSON");
      }
    }

    if (sid !== undefined) {
      const session = this.#sessions.get(sid);
      if (!session || session.caller !== caller) return rpcError(res, 404, SESSION_NOT_FOUND, "Session not found");
      if (method === "GET" && this.#closing) return rpcError(res, 503, ErrorCode.ConnectionClosed, SHUTTING_DOWN_MESSAGE);
      this.#track(res, session);
      return session.transport.handleRequest(req, res, body);
    }
    if (method === "POST" && isInitializeRequest(body)) {
      if (this.#closing) return rpcError(res, 503, ErrorCode.ConnectionClosed, SHUTTING_DOWN_MESSAGE);
      if (this.#sessions.size >= MAX_SESSIONS) {
        this.#log.warn("refused: too many MCP sessions", { caller, max: MAX_SESSIONS });
        return rpcError(res, 503, ErrorCode.ConnectionClosed, "Too many open sessions; close one (DELETE) or try later.");
      }
      return this.#open(req, res, body, caller);
    }
    return rpcError(res, 400, ErrorCode.ConnectionClosed, "Bad Request: no valid Mcp-Session-Id; start with an initialize request");
  }

  async #open(req: IncomingMessage, res: ServerResponse, body: unknown, caller: string): Promise<void> {
    const relay = this.#createServer(this.#deps);
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        session.id = id;
        this.#sessions.set(id, session);
        this.#log.info("MCP session opened", { session: id, caller, sessions: this.#sessions.size });
      },
    });
    const session: Session = { caller, transport, relay, open: 0, lastActive: this.#now() };
    const tracked = this.#tracker.wrap(transport);
    tracked.onclose = () => {
      if (session.id === undefined || this.#sessions.get(session.id) !== session) return;
      this.#sessions.delete(session.id);
      this.#log.info("MCP session closed", { session: session.id, caller, sessions: this.#sessions.size });
    };
    tracked.onerror = (err) => this.#log.debug("MCP transport error", { session: session.id, err });
    await relay.server.connect(tracked);
    this.#track(res, session);
    await transport.handleRequest(req, res, body);
    // Initialization refused (bad request): there is no session to keep.
    if (transport.sessionId === undefined) await relay.cleanup();
  }

  #track(res: ServerResponse, session: Session): void {
    session.open += 1;
    session.lastActive = this.#now();
    res.once("close", () => {
      session.open -= 1;
      session.lastActive = this.#now();
    });
  }

  #expireIdle(): void {
    const cutoff = this.#now() - this.#config.sessionIdleMs;
    for (const s of this.#sessions.values()) {
      if (s.open > 0 || s.lastActive > cutoff) continue;
      this.#log.info("MCP session expired", { session: s.id, caller: s.caller, idleMs: this.#config.sessionIdleMs });
      s.relay.cleanup().catch((err: unknown) => this.#log.warn("closing an expired session failed", { session: s.id, err }));
    }
  }

  /** Liveness and readiness for load balancers and systemd: counts only, never a name. */
  #probe(req: IncomingMessage, res: ServerResponse, path: "/healthz" | "/readyz"): void {
    if (req.method !== "GET" && req.method !== "HEAD") return plain(res, 405, "Method not allowed\n", { Allow: "GET, HEAD" });
    let status: number;
    let body: Record<string, unknown>;
    if (path === "/healthz") {
      const instances = { online: 0, offline: 0, unknown: 0 };
      for (const i of this.#deps.directory.list()) instances[i.health.status] += 1;
      status = 200;
      body = { status: this.#closing ? "shutting-down" : "ok", instances, sessions: this.#sessions.size, inFlight: this.#tracker.inFlight };
    } else {
      const ready = this.#deps.directory.started && this.#listening && !this.#closing;
      status = ready ? 200 : 503;
      body = { ready, ...(ready ? {} : { why: this.#closing ? "shutting down" : "starting" }) };
    }
    const text = `${JSON.stringify(body)}\n`;
    res.writeHead(status, { "Content-Type": "application/json", "Cache-Control": "no-store", "Content-Length": Buffer.byteLength(text) });
    res.end(req.method === "HEAD" ? undefined : text);
  }
}

function pathOf(req: IncomingMessage): string {
  // Not new URL(): a request target like "//evil/mcp" would be read as a host and path.
  return (req.url ?? "/").split("?")[0] ?? "/";
}

function plain(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store", ...headers });
  res.end(text);
}

function rpcError(res: ServerResponse, status: number, code: number, message: string, headers: Record<string, string> = {}): void {
  const text = JSON.stringify({ jsonrpc: "2.0", error: { code, message }, id: null });
  res.writeHead(status, { "Content-Type": "application/json", "Cache-Control": "no-store", ...headers });
  res.end(text);
}

/**
 * A scripted OpenAI-compatible chat-completions server on 127.0.0.1: the one fake in our tests, standing
 * in for the LLM provider that cannot run here. Real opencode talks to it exactly as to a provider.
 *
 * Behaviour is chosen by a directive at the start of the newest user message, so each test scripts its
 * own turn without shared queues:
 *   `/error`          answers HTTP 400 with a provider error (opencode reports session.error)
 *   `/permission`     calls the bash tool (a permission prompt when bash is set to "ask")
 *   `/hang`           never answers until the request is aborted
 *   `/chunks N text`  streams `text` split into N chunks
 *   `/slow N text`    the same, 150 ms between chunks (a turn long enough to break something mid-way)
 *   anything else     streams "Reply to: <message>" in several chunks
 * Title generation requests (opencode's small model) get a fixed short title.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface ChatRequest {
  model?: string;
  stream?: boolean;
  messages: Array<{ role: string; content: unknown; tool_call_id?: string }>;
  tools?: unknown[];
}

export type Reply =
  | { kind: "text"; chunks: string[]; delayMs?: number }
  | { kind: "error"; status: number; message: string }
  | { kind: "tool"; name: string; args: Record<string, unknown> }
  | { kind: "hang" };

export interface ModelServer {
  url: string;
  port: number;
  /** Every request received, newest last. */
  requests: ChatRequest[];
  /** Every text reply produced for a non-title request, in order: what `read` must later show. */
  replies: string[];
  close(): Promise<void>;
}

function textOf(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content
      .map((p) => (p && typeof p === "object" && "text" in p ? String((p as { text: unknown }).text) : ""))
      .join("");
  }
  return "";
}

function isTitleRequest(req: ChatRequest): boolean {
  const system = req.messages.filter((m) => m.role === "system").map((m) => textOf(m.content)).join("\n");
  return /title/i.test(system) && !req.tools?.length;
}

export function splitChunks(text: string, n: number): string[] {
  const size = Math.max(1, Math.ceil(text.length / n));
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out;
}

export function defaultScript(req: ChatRequest): Reply {
  if (isTitleRequest(req)) return { kind: "text", chunks: ["Test session"] };
  const last = req.messages[req.messages.length - 1];
  if (last?.role === "tool") return { kind: "text", chunks: ["Tool ", "finished."] };
  const lastUser = [...req.messages].reverse().find((m) => m.role === "user");
  const msg = textOf(lastUser?.content).trim();
  if (msg.startsWith("/error")) return { kind: "error", status: 400, message: "scripted provider failure" };
  if (msg.startsWith("/permission")) return { kind: "tool", name: "bash", args: { command: "echo hi", description: "Say hi" } };
  if (msg.startsWith("/hang")) return { kind: "hang" };
  const chunked = /^\/chunks (\d+) ([\s\S]*)$/.exec(msg);
  if (chunked) return { kind: "text", chunks: splitChunks(chunked[2] ?? "", Number(chunked[1])) };
  const slow = /^\/slow (\d+) ([\s\S]*)$/.exec(msg);
  if (slow) return { kind: "text", chunks: splitChunks(slow[2] ?? "", Number(slow[1])), delayMs: 150 };
  return { kind: "text", chunks: splitChunks(`Reply to: ${msg}`, 6) };
}

export interface ModelServerOptions {
  /** Default 0: any free port. */
  port?: number;
  /**
   * Called once a text reply has been written to opencode completely (the last chunk and [DONE] flushed):
   * what the model has produced, for checks that nothing produced is lost or duplicated.
   */
  onProduced?: (reply: string, req: ChatRequest) => void;
}

export async function startModelServer(script: (req: ChatRequest) => Reply = defaultScript, opts: ModelServerOptions = {}): Promise<ModelServer> {
  const requests: ChatRequest[] = [];
  const replies: string[] = [];
  const sockets = new Set<import("node:net").Socket>();
  const server = http.createServer((req, res) => {
    const body: Buffer[] = [];
    req.on("data", (c: Buffer) => body.push(c));
    req.on("end", () => {
      if (req.method !== "POST" || !req.url?.endsWith("/chat/completions")) {
        res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "not found" } }));
        return;
      }
      let parsed: ChatRequest;
      try {
        parsed = JSON.parse(Buffer.concat(body).toString("utf8")) as ChatRequest;
      } catch {
        res.writeHead(400).end();
        return;
      }
      requests.push(parsed);
      const reply = script(parsed);
      const title = isTitleRequest(parsed);
      void respond(parsed, reply, res, title ? undefined : replies, title ? undefined : opts.onProduced);
    });
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, "127.0.0.1", resolve);
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    port,
    requests,
    replies,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

async function respond(req: ChatRequest, reply: Reply, res: http.ServerResponse, replies?: string[], onProduced?: ModelServerOptions["onProduced"]): Promise<void> {
  const id = `chatcmpl-${Math.random().toString(36).slice(2)}`;
  const created = Math.floor(Date.now() / 1000);
  const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
    `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model: req.model ?? "fake-model", choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
  if (reply.kind === "error") {
    res.writeHead(reply.status, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: { message: reply.message, type: "invalid_request_error", code: "scripted" } }));
    return;
  }
  if (reply.kind === "hang") {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write(chunk({ role: "assistant", content: "" }));
    return; // never finishes; the client's abort closes the socket
  }
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  res.write(chunk({ role: "assistant", content: "" }));
  if (reply.kind === "tool") {
    const call = { index: 0, id: `call_${id.slice(-8)}`, type: "function", function: { name: reply.name, arguments: JSON.stringify(reply.args) } };
    res.write(chunk({ tool_calls: [call] }));
    res.write(chunk({}, "tool_calls"));
  } else {
    replies?.push(reply.chunks.join(""));
    for (const piece of reply.chunks) {
      if (reply.delayMs) await new Promise((r) => setTimeout(r, reply.delayMs));
      if (res.destroyed) return;
      res.write(chunk({ content: piece }));
    }
    res.write(chunk({}, "stop"));
  }
  const text = reply.kind === "text" ? reply.chunks.join("") : undefined;
  res.end("data: [DONE]\n\n", () => {
    if (text !== undefined && onProduced) onProduced(text, req);
  });
}

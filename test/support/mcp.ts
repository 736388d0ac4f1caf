/**
 * The real MCP SDK client against the built `opencode-mcp`: over stdio, exactly what a gateway does, or
 * over Streamable HTTP, exactly what a remote MCP client does.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ReadBuffer, serializeMessage } from "@modelcontextprotocol/sdk/shared/stdio.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { CallToolResult, JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { PACKAGE_ROOT } from "../../src/shared/package-info.js";
import { waitFor } from "./wait.js";

export const RELAY_MAIN = path.join(PACKAGE_ROOT, "dist", "src", "relay", "main.js");

export type ToolCall = (name: string, args?: Record<string, unknown>, onProgress?: (message: string) => void) => Promise<CallToolResult & { text: string }>;

export interface RelayClient {
  client: Client;
  /** The server process (stdio) ; null once it is gone. */
  pid: number | null;
  /** Everything the server wrote to stderr so far. */
  stderr(): string;
  /** Protocol errors the client saw, e.g. a line on stdout that is not JSON-RPC. */
  protocolErrors: Error[];
  call: ToolCall;
  close(): Promise<void>;
}

/** `client.callTool` with progress (as deltas) and the text joined, as every test wants it. */
export function toolCaller(client: Client): ToolCall {
  return async (name, args = {}, onProgress) => {
    const result = (await client.callTool(
      { name, arguments: args },
      undefined,
      onProgress ? { onprogress: (p) => onProgress(p.message ?? ""), resetTimeoutOnProgress: true, timeout: 120_000 } : { timeout: 120_000 },
    )) as CallToolResult;
    const text = result.content.map((c) => (c.type === "text" ? c.text : "")).join("\n");
    return { ...result, text };
  };
}

export async function startRelay(env: Record<string, string>): Promise<RelayClient> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [RELAY_MAIN],
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", LOG_LEVEL: "debug", ...env },
    stderr: "pipe",
  });
  let stderr = "";
  transport.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const client = new Client({ name: "relay-test", version: "1.0.0" });
  const protocolErrors: Error[] = [];
  client.onerror = (err) => protocolErrors.push(err);
  try {
    await client.connect(transport);
  } catch (err) {
    await transport.close().catch(() => {});
    throw new Error(`opencode-mcp did not start: ${(err as Error).message}\n${stderr}`, { cause: err });
  }
  return {
    client,
    get pid() {
      return transport.pid;
    },
    protocolErrors,
    stderr: () => stderr,
    call: toolCaller(client),
    close: () => client.close(),
  };
}

export interface HttpClient {
  client: Client;
  transport: StreamableHTTPClientTransport;
  call: ToolCall;
  close(): Promise<void>;
}

/** An MCP client over Streamable HTTP, with `Authorization: Bearer <token>` when a token is given. */
export async function connectHttp(url: string, token?: string, name = "relay-http-test"): Promise<HttpClient> {
  const transport = new StreamableHTTPClientTransport(new URL(url), token ? { requestInit: { headers: { Authorization: `Bearer ${token}` } } } : {});
  const client = new Client({ name, version: "1.0.0" });
  await client.connect(transport);
  return { client, transport, call: toolCaller(client), close: () => client.close() };
}

export interface RelayProcess {
  child: ChildProcessWithoutNullStreams;
  /** Resolves with the exit code (null if killed by a signal). */
  exited: Promise<number | null>;
  stdout(): string;
  stderr(): string;
  /** SIGKILL if still running; waits for the exit. For cleanup on every path. */
  kill(): Promise<void>;
}

/** The built opencode-mcp as a plain child process (e.g. `--http`), its output collected. */
export function spawnRelay(env: Record<string, string>, args: string[] = []): RelayProcess {
  const child = spawn(process.execPath, [RELAY_MAIN, ...args], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  let done = false;
  const exited = new Promise<number | null>((resolve) =>
    child.on("exit", (code) => {
      done = true;
      resolve(code);
    }),
  );
  return {
    child,
    exited,
    stdout: () => stdout,
    stderr: () => stderr,
    async kill() {
      if (!done) child.kill("SIGKILL");
      await exited;
    },
  };
}

/** Starts `opencode-mcp --http` and waits until it is ready (it logs "opencode-mcp ready"). */
export async function startHttpRelay(env: Record<string, string>): Promise<RelayProcess> {
  const p = spawnRelay({ LOG_LEVEL: "debug", ...env }, ["--http"]);
  try {
    await Promise.race([
      waitFor(() => /opencode-mcp ready/.test(p.stderr()), { timeoutMs: 15_000, what: "opencode-mcp --http to be ready" }),
      p.exited.then((code) => {
        throw new Error(`opencode-mcp --http exited ${code} before it was ready:\n${p.stderr()}`);
      }),
    ]);
  } catch (err) {
    await p.kill();
    throw err;
  }
  return p;
}

/**
 * The MCP client side of stdio over a process we spawned ourselves (StdioClientTransport spawns its
 * own and hides its exit code): for tests of how the server exits.
 */
export class ChildStdioTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  readonly #proc: RelayProcess;
  readonly #buffer = new ReadBuffer();

  constructor(proc: RelayProcess) {
    this.#proc = proc;
  }

  async start(): Promise<void> {
    this.#proc.child.stdout.on("data", (chunk: Buffer) => {
      this.#buffer.append(chunk);
      for (let m = this.#buffer.readMessage(); m; m = this.#buffer.readMessage()) this.onmessage?.(m);
    });
    this.#proc.child.on("exit", () => this.onclose?.());
  }

  async send(message: JSONRPCMessage): Promise<void> {
    this.#proc.child.stdin.write(serializeMessage(message));
  }

  async close(): Promise<void> {
    this.#proc.child.stdin.end();
  }
}

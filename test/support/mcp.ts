/**
 * The real MCP SDK client, over stdio, against the built `opencode-mcp` — exactly what a gateway does.
 */
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { PACKAGE_ROOT } from "../../src/shared/package-info.js";

export const RELAY_MAIN = path.join(PACKAGE_ROOT, "dist", "src", "relay", "main.js");

export interface RelayClient {
  client: Client;
  /** Everything the server wrote to stderr so far. */
  stderr(): string;
  /** Protocol errors the client saw, e.g. a line on stdout that is not JSON-RPC. */
  protocolErrors: Error[];
  call(name: string, args?: Record<string, unknown>, onProgress?: (message: string) => void): Promise<CallToolResult & { text: string }>;
  close(): Promise<void>;
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
  await client.connect(transport);
  return {
    client,
    protocolErrors,
    stderr: () => stderr,
    async call(name, args = {}, onProgress) {
      const result = (await client.callTool(
        { name, arguments: args },
        undefined,
        onProgress
          ? { onprogress: (p) => onProgress(p.message ?? ""), resetTimeoutOnProgress: true, timeout: 120_000 }
          : { timeout: 120_000 },
      )) as CallToolResult;
      const text = result.content.map((c) => (c.type === "text" ? c.text : "")).join("\n");
      return { ...result, text };
    },
    close: () => client.close(),
  };
}

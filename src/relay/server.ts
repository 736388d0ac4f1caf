/**
 * Builds the MCP server: the three tools over one instance directory. Transport-agnostic: the stdio
 * entry point connects one; the HTTP server (http/http-server.ts) one per MCP session, over the same deps.
 */
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { PACKAGE_VERSION } from "../shared/package-info.js";
import { registerInstancesTool } from "./tools/instances.js";
import { registerReadTool } from "./tools/read.js";
import { registerSendTool } from "./tools/send.js";
import type { ToolDeps } from "./tools/tool-result.js";

export interface RelayServer {
  server: McpServer;
  /** Closes the MCP server; the directory belongs to the caller. */
  cleanup(): Promise<void>;
}

export function createServer(deps: ToolDeps): RelayServer {
  const server = new McpServer(
    { name: "opencode-relay", version: PACKAGE_VERSION },
    {
      capabilities: { tools: {}, logging: {} },
      instructions:
        "Drive the user's OpenCode coding agents on their machines. Call instances to see them, send to prompt one, read to see what it has been doing.",
    },
  );
  registerInstancesTool(server, deps);
  registerSendTool(server, deps);
  registerReadTool(server, deps);
  return { server, cleanup: () => server.close() };
}

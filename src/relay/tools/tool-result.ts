/**
 * What every tool needs besides its own logic: its dependencies, and results shaped for a chat model
 * (a sentence it can act on) with the same facts as structured content for programs.
 */
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import type { Logger } from "../../shared/logger.js";
import type { AuditLog } from "../audit.js";
import type { InstanceDirectory } from "../instances/instance-directory.js";

export interface ToolDeps {
  directory: InstanceDirectory;
  sendTimeoutMs: number;
  logger: Logger;
  audit: AuditLog;
  /** Aborted when the server begins a graceful shutdown: waits end at once with a clear message. */
  shutdown?: AbortSignal;
}

export function textResult(text: string, structured?: Record<string, unknown>): CallToolResult {
  return { content: [{ type: "text", text }], ...(structured ? { structuredContent: structured } : {}) };
}

/** A tool that could not do what was asked: `isError`, with a sentence that says what to do. */
export function errorResult(text: string): CallToolResult {
  return { content: [{ type: "text", text }], isError: true };
}

/**
 * `read`: the last messages of an instance's session as readable text: role, time, text, tool calls
 * with their status, errors, and whatever is waiting for a permission or an answer.
 */
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { pickSession } from "../opencode/sessions.js";
import { formatMessage, formatPending } from "../opencode/transcript.js";
import { callFailure, resolveTarget } from "./target.js";
import { errorResult, textResult, type ToolDeps } from "./tool-result.js";

export const MAX_MESSAGE_LIMIT = 200;

export const readInputSchema = {
  instance: z.string().min(1).describe("Instance name, or any unambiguous part of it (see instances)."),
  message_limit: z.number().int().min(1).max(MAX_MESSAGE_LIMIT).optional().describe("How many of the latest messages to show (default 10)."),
  session: z.string().optional().describe("Session id, id prefix or title. Default: the most recently updated session."),
};

export const readConfig = {
  title: "Read an OpenCode session",
  description:
    "Show the latest messages of an OpenCode instance's session (default: its most recently updated one): who said what and when, tool calls with their status, and anything waiting for a permission or an answer.",
  inputSchema: readInputSchema,
  annotations: { readOnlyHint: true, openWorldHint: true },
};

type ReadArgs = { [K in keyof typeof readInputSchema]: z.infer<(typeof readInputSchema)[K]> };

export function registerReadTool(server: McpServer, deps: ToolDeps): void {
  server.registerTool("read", readConfig, async (args: ReadArgs): Promise<CallToolResult> => {
    const target = await resolveTarget(deps, args.instance);
    if (!target.ok) return target.result;
    const { instance, name } = target;
    const client = instance.client;
    const limit = args.message_limit ?? 10;
    try {
      const signal = AbortSignal.timeout(deps.sendTimeoutMs);
      const picked = await pickSession(client, args.session, signal);
      if (!picked.ok) return errorResult(picked.message);
      const session = picked.session;
      if (!session) return textResult(`${name} has no sessions yet. Use send to start one.`, { messages: [] });
      const [messages, status, permissions, questions] = await Promise.all([
        client.session.messages({ sessionID: session.id, limit }, { signal }),
        client.session.status(undefined, { signal }),
        client.permission.list(undefined, { signal }),
        client.question.list(undefined, { signal }).catch(() => ({ data: [] })),
      ]);
      deps.directory.recordCallSuccess(instance.endpoint.key, Object.values(status.data ?? {}).some((st) => st.type !== "idle"));
      const list = messages.data ?? [];
      const state = status.data?.[session.id]?.type ?? "idle";
      const pending = formatPending(
        (permissions.data ?? []).filter((p) => p.sessionID === session.id),
        (questions.data ?? []).filter((q) => q.sessionID === session.id),
      );
      const header = `Session "${session.title}" (${session.id}) on ${name}, ${state}; last ${list.length} message${list.length === 1 ? "" : "s"}:`;
      const text = [header, ...list.map(formatMessage), ...pending].join("\n\n");
      return textResult(text, { session: session.id, sessionTitle: session.title, state, messageCount: list.length, pending });
    } catch (err) {
      return callFailure(deps, target, err, "read the session");
    }
  });
}

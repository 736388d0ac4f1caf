/**
 * `send`: prompt an instance's session and return the reply, streaming text deltas as MCP progress
 * notifications when the caller sent a progress token. `abort=true` stops the running turn first.
 */
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { RequestHandlerExtra } from "@modelcontextprotocol/sdk/shared/protocol.js";
import { EmptyResultSchema, type CallToolResult, type ServerNotification, type ServerRequest } from "@modelcontextprotocol/sdk/types.js";
import type { Session } from "@opencode-ai/sdk/v2";
import { z } from "zod";
import { pickSession } from "../opencode/sessions.js";
import { openEventFeed, runTurn, type TurnOutcome } from "../opencode/turn.js";
import { callFailure, resolveTarget } from "./target.js";
import { errorResult, textResult, type ToolDeps } from "./tool-result.js";

export const sendInputSchema = {
  instance: z.string().min(1).describe("Instance name, or any unambiguous part of it (see instances)."),
  message: z.string().optional().describe("The prompt to send. May be omitted with abort=true."),
  abort: z.boolean().optional().describe("Abort the session's running turn (before sending `message`, if given)."),
  session: z.string().optional().describe("Session id, id prefix or title. Default: the most recently updated session."),
  new_session: z.boolean().optional().describe("Start a new session instead of continuing one."),
  wait: z.boolean().optional().describe("false: return as soon as the prompt is accepted; read the reply later with read. Default true."),
  agent: z.string().optional().describe("OpenCode agent to use, e.g. build or plan."),
  model: z.string().optional().describe("Model as provider/model, e.g. anthropic/claude-sonnet-4-5."),
};

export const sendConfig = {
  title: "Send a prompt to an OpenCode instance",
  description:
    "Send a message to an OpenCode coding agent and return its reply (text streams as progress notifications). Continues the most recently updated session unless `session` or `new_session` says otherwise. Returns at once if the agent stops to ask for a permission or an answer, or fails. abort=true stops a running turn.",
  inputSchema: sendInputSchema,
  annotations: { readOnlyHint: false, destructiveHint: true, openWorldHint: true },
};

/** Bound on the ping that orders the last progress notification before the result. */
const PING_TIMEOUT_MS = 1_000;

type SendArgs = { [K in keyof typeof sendInputSchema]: z.infer<(typeof sendInputSchema)[K]> };

function parseModel(model: string | undefined): { providerID: string; modelID: string } | undefined | Error {
  if (!model) return undefined;
  const slash = model.indexOf("/");
  if (slash <= 0 || slash === model.length - 1) return new Error(`model must look like provider/model (e.g. anthropic/claude-sonnet-4-5), got "${model}"`);
  return { providerID: model.slice(0, slash), modelID: model.slice(slash + 1) };
}

function outcomeResult(outcome: TurnOutcome, where: string, session: Session, timeoutMs: number): CallToolResult {
  const structured = (extra: Record<string, unknown>) => ({ session: session.id, sessionTitle: session.title, state: outcome.state, ...extra });
  switch (outcome.state) {
    case "done":
      return textResult(outcome.reply || "(the agent finished without a text reply)", structured({ reply: outcome.reply }));
    case "submitted":
      return textResult(`Sent to ${where}, session "${session.title}" (${session.id}). The turn is running; call read to see the reply.`, structured({}));
    case "error":
      return {
        ...errorResult(`The turn on ${where} failed: ${outcome.error}.${outcome.reply ? `\nText before the failure:\n${outcome.reply}` : ""}`),
        structuredContent: structured({ reply: outcome.reply, error: outcome.error }),
      };
    case "aborted":
      return textResult(`The turn on ${where} was aborted.${outcome.reply ? `\nText before the abort:\n${outcome.reply}` : ""}`, structured({ reply: outcome.reply }));
    case "waiting":
      return textResult(
        `The agent on ${where} is waiting for ${outcome.waiting}. Someone must answer it in OpenCode there; the turn continues after that.${outcome.reply ? `\nText so far:\n${outcome.reply}` : ""}`,
        structured({ reply: outcome.reply, waiting: outcome.waiting }),
      );
    case "timeout":
      return textResult(
        `No end of turn within ${Math.round(timeoutMs / 1000)} s; the turn on ${where} is still running. Call read later for the rest.${outcome.reply ? `\nText so far:\n${outcome.reply}` : ""}`,
        structured({ reply: outcome.reply }),
      );
  }
}

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** What the audit line needs to know of a call, filled in as the handler learns it. */
interface CallNote {
  instance?: string;
  session?: string;
}

/** Who called: "stdio", or the label the HTTP layer gave the bearer token (never the token). */
export function callerOf(extra: Extra): string {
  return extra.authInfo?.clientId ?? "stdio";
}

function outcomeOf(result: CallToolResult): string {
  const state = (result.structuredContent as { state?: unknown } | undefined)?.state;
  if (typeof state === "string") return result.isError ? `error: ${state}` : state;
  const text = result.content.map((c) => (c.type === "text" ? c.text : "")).join(" ");
  return `${result.isError ? "refused" : "ok"}: ${text.slice(0, 160)}`;
}

export function registerSendTool(server: McpServer, deps: ToolDeps): void {
  server.registerTool("send", sendConfig, async (args: SendArgs, extra): Promise<CallToolResult> => {
    const started = Date.now();
    const note: CallNote = {};
    const result = await handleSend(args, extra, deps, note);
    deps.audit.record({
      caller: callerOf(extra),
      action: args.abort ? (args.message?.trim() ? "abort+send" : "abort") : "send",
      instanceQuery: args.instance,
      ...(note.instance ? { instance: note.instance } : {}),
      ...(note.session ? { session: note.session } : {}),
      ...(args.message !== undefined ? { message: args.message } : {}),
      outcome: outcomeOf(result),
      durationMs: Date.now() - started,
    });
    return result;
  });
}

async function handleSend(args: SendArgs, extra: Extra, deps: ToolDeps, note: CallNote): Promise<CallToolResult> {
  const message = args.message?.trim() ? args.message : undefined;
  if (!message && !args.abort) return errorResult("Nothing to do: give a message to send, or abort=true to stop the running turn.");
  const model = parseModel(args.model);
  if (model instanceof Error) return errorResult(`${model.message}.`);
  if (args.new_session && args.session) return errorResult("Give either session or new_session, not both.");

  const target = await resolveTarget(deps, args.instance);
  if (!target.ok) return target.result;
  const { instance, name } = target;
  note.instance = name;
  const client = instance.client;
  const log = deps.logger.child({ tool: "send", instance: name });
  // Subscribe while we look the session up: the subscription round trip overlaps the lookups instead
  // of following them. It is still live before anything is submitted.
  const feed = message && args.wait !== false ? openEventFeed(client, extra.signal) : undefined;
  try {
    const signal = AbortSignal.timeout(deps.sendTimeoutMs);
    const [picked, status] = await Promise.all([
      args.new_session ? Promise.resolve({ ok: true as const, session: undefined }) : pickSession(client, args.session, signal),
      client.session.status(undefined, { signal }),
    ]);
    if (!picked.ok) return errorResult(picked.message);
    let session: Session | undefined = picked.session;
    if (session) note.session = session.id;
    const busy = session ? (status.data?.[session.id]?.type ?? "idle") !== "idle" : false;

    if (args.abort) {
      if (!session || !busy) {
        if (!message) return textResult(`Nothing to abort on ${name}: ${session ? `session "${session.title}" is idle` : "it has no sessions"}.`, { state: "idle" });
      } else {
        await client.session.abort({ sessionID: session.id }, { signal });
        log.info("aborted turn", { session: session.id });
        if (!message) return textResult(`Aborted the running turn on ${name}, session "${session.title}" (${session.id}).`, { session: session.id, state: "aborted" });
      }
    } else if (busy && session) {
      return errorResult(
        `${name} is busy: session "${session.title}" (${session.id}) is running a turn. Call read to follow it, send with abort=true to stop it, or new_session=true to work in parallel.`,
      );
    }
    if (!session) {
      // The client throws on HTTP errors (throwOnError), so data is always there.
      session = (await client.session.create({}, { signal })).data as Session;
      note.session = session.id;
      log.info("created session", { session: session.id });
    }

    const progressToken = extra._meta?.progressToken;
    let count = 0;
    const sent: Array<Promise<void>> = [];
    const onDelta =
      progressToken === undefined
        ? undefined
        : (delta: string) => {
            count += 1;
            sent.push(
              extra
                .sendNotification({ method: "notifications/progress", params: { progressToken, progress: count, message: delta } })
                .catch((err: unknown) => log.debug("progress notification failed", { err })),
            );
          };
    const outcome = await runTurn({
      client,
      sessionID: session.id,
      text: message!,
      ...(args.agent ? { agent: args.agent } : {}),
      ...(model ? { model } : {}),
      timeoutMs: deps.sendTimeoutMs,
      wait: args.wait ?? true,
      signal: deps.shutdown ? AbortSignal.any([extra.signal, deps.shutdown]) : extra.signal,
      ...(onDelta ? { onDelta } : {}),
      ...(feed ? { feed } : {}),
      currentClient: () => deps.directory.clientFor(instance.endpoint.key),
      logger: log,
    });
    if (sent.length) {
      // The MCP SDK client handles a response before progress notifications that arrived in the same
      // read, and then drops them (typescript-sdk issue #2580); a pause only makes that rarer. A ping
      // is answered only after the client has read, in order, everything we sent before it, so once it
      // returns the deltas are delivered. Clients that do not answer cost at most PING_TIMEOUT_MS.
      await Promise.all(sent);
      await extra.sendRequest({ method: "ping" }, EmptyResultSchema, { timeout: PING_TIMEOUT_MS }).catch(() => {});
    }
    const stillRunning = outcome.state === "submitted" || outcome.state === "waiting" || outcome.state === "timeout";
    deps.directory.recordCallSuccess(instance.endpoint.key, stillRunning);
    log.info("turn ended", { session: session.id, state: outcome.state });
    if (outcome.state === "timeout" && deps.shutdown?.aborted) {
      return textResult(
        `The relay is shutting down, so it stopped waiting; the turn on ${name} continues there. Call read once the relay is back.${outcome.reply ? `\nText so far:\n${outcome.reply}` : ""}`,
        { session: session.id, sessionTitle: session.title, state: "relay-shutdown", reply: outcome.reply },
      );
    }
    return outcomeResult(outcome, name, session, deps.sendTimeoutMs);
  } catch (err) {
    log.warn("send failed", { err });
    return callFailure(deps, target, err, "send the prompt");
  } finally {
    feed?.close();
  }
}


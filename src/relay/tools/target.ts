/**
 * The first step of `send` and `read`: from a fuzzy name to an instance that can be called, or a
 * result that says why not. And the last step: turning a failed opencode call into such a sentence.
 */
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import type { Instance } from "../instances/instance-directory.js";
import { classifyFailure, describeFailure } from "../opencode/client.js";
import { formatTime } from "../opencode/transcript.js";
import { errorResult, type ToolDeps } from "./tool-result.js";

export type Target = { ok: true; instance: Instance; name: string } | { ok: false; result: CallToolResult };

export async function resolveTarget(deps: ToolDeps, query: string): Promise<Target> {
  const found = deps.directory.resolve(query);
  if (!found.ok) return { ok: false, result: errorResult(found.message) };
  const instance = found.instance;
  const name = deps.directory.displayName(instance.endpoint);
  if (instance.health.status === "offline") {
    // Health is a few seconds old at most; one fresh probe costs little next to a wrong "offline".
    await deps.directory.health.probe(instance.endpoint.key);
    const h = deps.directory.health.get(instance.endpoint.key);
    if (h.status === "offline") {
      const why = h.lastFailure ? ` (${h.lastFailure.message})` : "";
      return {
        ok: false,
        result: errorResult(`${name} is offline since ${formatTime(h.since.getTime())}${why}. It reappears when its machine reconnects; call instances to see what is online.`),
      };
    }
  }
  return { ok: true, instance, name };
}

/** A failed call to an instance as a sentence, recording the failure in its health. */
export function callFailure(deps: ToolDeps, target: { instance: Instance; name: string }, err: unknown, doing: string): CallToolResult {
  deps.directory.recordCallFailure(target.instance.endpoint.key, err);
  const kind = classifyFailure(err);
  if (kind === "refused") return errorResult(`${target.name} is offline: ${describeFailure(kind, err)}. Call instances to see what is online.`);
  return errorResult(`Could not ${doing} on ${target.name}: ${describeFailure(kind, err)}.`);
}

/**
 * `instances`: every OpenCode instance the relay knows, from cache (never waits on the network):
 * online/offline and since when, busy/idle, host, folder, opencode version, latest session.
 */
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import type { InstanceView } from "../instances/instance-directory.js";
import { formatTime } from "../opencode/transcript.js";
import { textResult, type ToolDeps } from "./tool-result.js";

const InstanceInfo = z.object({
  name: z.string(),
  transport: z.string(),
  hostname: z.string().optional(),
  cwd: z.string().optional(),
  status: z.enum(["online", "offline", "unknown"]),
  since: z.string(),
  lastSeen: z.string().optional(),
  busy: z.boolean().optional(),
  version: z.string().optional(),
  latestSession: z.object({ id: z.string(), title: z.string(), updated: z.string() }).optional(),
  problem: z.string().optional(),
});

export const instancesOutputSchema = { instances: z.array(InstanceInfo) };

export const instancesConfig = {
  title: "List OpenCode instances",
  description:
    "List every OpenCode coding agent connected to this relay: name, machine, folder, online/offline (and since when), busy/idle, opencode version and the title of its most recent session. Instant: served from the relay's cache. Use a name (or any unambiguous part of it) as `instance` in send and read.",
  inputSchema: {},
  outputSchema: instancesOutputSchema,
  annotations: { readOnlyHint: true, openWorldHint: false },
};

function describe(i: InstanceView, name: string): z.infer<typeof InstanceInfo> {
  const h = i.health;
  const info: z.infer<typeof InstanceInfo> = { name, transport: i.endpoint.transport, status: h.status, since: h.since.toISOString() };
  if (i.endpoint.hostname) info.hostname = i.endpoint.hostname;
  if (i.endpoint.cwd) info.cwd = i.endpoint.cwd;
  if (h.lastSeen) info.lastSeen = h.lastSeen.toISOString();
  if (h.busy !== undefined && h.status === "online") info.busy = h.busy;
  const version = h.version ?? i.endpoint.version;
  if (version) info.version = version;
  if (h.latestSession) info.latestSession = { id: h.latestSession.id, title: h.latestSession.title, updated: new Date(h.latestSession.updated).toISOString() };
  if (h.lastFailure) info.problem = h.lastFailure.message;
  return info;
}

function line(info: z.infer<typeof InstanceInfo>): string {
  const state =
    info.status === "online" ? `online, ${info.busy === undefined ? "status unknown" : info.busy ? "busy" : "idle"}`
    : info.status === "offline" ? `OFFLINE since ${formatTime(Date.parse(info.since))}${info.problem ? ` (${info.problem})` : ""}`
    : info.problem ? `not answering yet (${info.problem})` : "not checked yet";
  const parts = [`${info.name}: ${state}`];
  if (info.hostname) parts.push(`host ${info.hostname}`);
  if (info.cwd) parts.push(info.cwd);
  if (info.version) parts.push(`opencode ${info.version}`);
  if (info.latestSession) parts.push(`latest session "${info.latestSession.title}"`);
  return `- ${parts.join(" · ")}`;
}

export function registerInstancesTool(server: McpServer, deps: ToolDeps): void {
  server.registerTool("instances", instancesConfig, async () => {
    const all = deps.directory.list();
    const clashes = deps.directory.clashingNames(all.map((i) => i.endpoint));
    const infos = all.map((i) => describe(i, deps.directory.displayName(i.endpoint, clashes)));
    if (infos.length === 0) {
      return textResult("No OpenCode instances are connected. On each machine, start OpenCode with `opencode-connected` instead of `opencode`.", { instances: [] });
    }
    const online = infos.filter((i) => i.status === "online").length;
    const text = [`${infos.length} instance${infos.length === 1 ? "" : "s"}, ${online} online:`, ...infos.map(line)].join("\n");
    return textResult(text, { instances: infos });
  });
}

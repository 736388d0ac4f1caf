/** `opencode-connected sessions`: recent sessions of the instances this machine's launchers run. */
import { createOpencodeClient } from "@opencode-ai/sdk/v2";
import type { LauncherConfig } from "../config.js";
import { RunStateStore, processAlive } from "../run-state.js";

export async function sessionsCommand(config: LauncherConfig, out: (s: string) => void): Promise<number> {
  const runs = (await new RunStateStore(config.stateDir).list()).filter((r) => processAlive(r.pid));
  if (runs.length === 0) {
    out("No launcher is running on this machine.");
    return 0;
  }
  for (const r of runs) {
    const client = createOpencodeClient({
      baseUrl: `http://127.0.0.1:${r.localPort}`,
      headers: { authorization: `Basic ${Buffer.from(`${r.username}:${r.password}`).toString("base64")}` },
      throwOnError: true,
    });
    try {
      const { data } = await client.session.list({ roots: true, limit: 5 }, { signal: AbortSignal.timeout(5_000) });
      out(`${r.name} (${r.cwd}):`);
      if (!data?.length) out("  no sessions yet");
      for (const s of data ?? []) out(`  ${s.id}  ${new Date(s.time.updated).toISOString()}  ${s.title}`);
    } catch (err) {
      out(`${r.name}: cannot reach opencode on port ${r.localPort}: ${(err as Error).message}`);
    }
  }
  return 0;
}

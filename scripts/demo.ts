/**
 * `npm run demo`: the product working end to end in under a minute, on one machine, offline.
 * A scripted model stands in for the LLM provider; everything else is real: two `opencode serve`
 * instances, their registrations in a temporary registry, the built `opencode-mcp` over stdio, and the
 * MCP SDK client playing the chat model's part: instances → send (streamed) → read.
 */
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { startRelay, type RelayClient } from "../test/support/mcp.js";
import { startModelServer, type ModelServer } from "../test/support/model-server.js";
import { startOpencode, type OpencodeInstance } from "../test/support/opencode.js";
import { tempDir } from "../test/support/temp.js";
import { waitFor } from "../test/support/wait.js";
import { rerunOffline } from "./offline.js";

const out = (s = "") => process.stdout.write(`${s}\n`);
const step = (s: string) => out(`\n\x1b[1m▶ ${s}\x1b[0m`);

async function main(): Promise<void> {
  const started = Date.now();
  const tmp = tempDir("ocr-demo-");
  const registry = path.join(tmp.path, "registry");
  mkdirSync(registry, { mode: 0o700 });
  let model: ModelServer | undefined;
  let instances: OpencodeInstance[] = [];
  let relay: RelayClient | undefined;
  try {
    step("Starting a scripted model server and two real opencode instances (opencode serve)");
    model = await startModelServer();
    const launched = await Promise.allSettled([
      startOpencode({ modelUrl: model.url, project: "webshop", password: "demo-password" }),
      startOpencode({ modelUrl: model.url, project: "infra" }),
    ]);
    // Whatever started is stopped in finally, even if the other one failed.
    instances = launched.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    const failed = launched.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
    const names = ["laptop-webshop", "desktop-infra"];
    instances.forEach((oc, i) => {
      const name = names[i]!;
      const reg = {
        name,
        hostname: name.split("-")[0],
        port: oc.port,
        localPort: oc.port,
        cwd: oc.cwd,
        connectedAt: new Date().toISOString(),
        ...(oc.password ? { auth: { username: "opencode", password: oc.password } } : {}),
      };
      const tmpFile = path.join(registry, `.${name}.json.tmp`);
      writeFileSync(tmpFile, JSON.stringify(reg, null, 2), { mode: 0o600 });
      renameSync(tmpFile, path.join(registry, `${name}.json`));
      out(`  registered ${name} → opencode on 127.0.0.1:${oc.port}${oc.password ? " (password-protected)" : ""}`);
    });

    step("Starting opencode-mcp over stdio, the way an MCP gateway does");
    relay = await startRelay({ RELAY_REGISTRY_DIR: registry, LOG_LEVEL: "warn", HEALTH_INTERVAL_MS: "1000" });
    await waitFor(
      async () => ((await relay!.call("instances")).structuredContent as { instances: Array<{ status: string; busy?: boolean }> }).instances.every((i) => i.status === "online" && i.busy !== undefined),
      { timeoutMs: 15_000, what: "both instances to be online" },
    );

    step('Chat model calls instances');
    out((await relay.call("instances")).text);

    step('Chat model calls send { instance: "webshop", message: "Summarise the failing test" } (deltas stream as progress)');
    process.stdout.write("  streamed: ");
    const sent = await relay.call("send", { instance: "webshop", message: "/chunks 7 The failing test expects a 201 from POST /orders; the handler returns 200. Fix: return 201." }, (d) => process.stdout.write(`\x1b[36m${d}\x1b[0m|`));
    out();
    out(`  reply:    ${sent.text}`);

    step('Chat model calls send { instance: "infra", message: "/error" } (the provider fails; the error comes back at once)');
    out((await relay.call("send", { instance: "infra", message: "/error" })).text);

    step('Chat model calls read { instance: "webshop", message_limit: 4 }');
    out((await relay.call("read", { instance: "webshop", message_limit: 4 })).text);

    step('Chat model calls send { instance: "top" } (fuzzy names never guess)');
    out((await relay.call("send", { instance: "top", message: "hi" })).text);

    out(`\nDone in ${((Date.now() - started) / 1000).toFixed(1)} s. Next: README.md → "Use it for real".`);
  } finally {
    await relay?.close();
    await Promise.all(instances.map((i) => i.stop()));
    await model?.close();
    tmp.remove();
  }
}

// As root, in a network namespace with only loopback: opencode cannot reach beyond 127.0.0.1.
const offline = rerunOffline((l) => process.stderr.write(`demo: ${l}\n`));
if (offline !== undefined) process.exit(offline);

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});

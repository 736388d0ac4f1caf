/**
 * The scripted model as its own process, so it can run inside a laptop's network namespace next to that
 * laptop's opencode. Turn prompts (`turn <id>`) are answered "Reply to: turn <id>" in several chunks with a
 * short pause between them, so a fault can land in the middle of a turn. Every reply written to opencode
 * completely is appended to the ledger file (one JSON line: at, reply): what the model produced, for the
 * check that nothing produced is lost or duplicated. Prints "listening PORT" once ready.
 *
 * Usage: node model-main.js LEDGER_FILE [CHUNK_DELAY_MS]
 */
import { appendFileSync } from "node:fs";
import { defaultScript, splitChunks, startModelServer, type ChatRequest, type Reply } from "../support/model-server.js";

const [ledger, delayArg] = process.argv.slice(2);
if (!ledger) {
  process.stderr.write("usage: model-main LEDGER_FILE [CHUNK_DELAY_MS]\n");
  process.exit(2);
}
const delayMs = Number(delayArg ?? 60);

function lastUserText(req: ChatRequest): string {
  const user = [...req.messages].reverse().find((m) => m.role === "user");
  const c = user?.content;
  if (typeof c === "string") return c;
  if (Array.isArray(c)) return c.map((p) => (p && typeof p === "object" && "text" in p ? String((p as { text: unknown }).text) : "")).join("");
  return "";
}

function script(req: ChatRequest): Reply {
  const reply = defaultScript(req);
  const msg = lastUserText(req).trim();
  // Only the agent's own request (it offers tools); the title request shows the same user message.
  if (reply.kind === "text" && req.tools?.length && /^turn <[^>]+>$/.test(msg) && req.messages.at(-1)?.role === "user") {
    return { kind: "text", chunks: splitChunks(`Reply to: ${msg}`, 8), delayMs };
  }
  return reply;
}

const server = await startModelServer(script, {
  onProduced: (reply) => appendFileSync(ledger, `${JSON.stringify({ at: Date.now(), reply })}\n`),
});
process.stdout.write(`listening ${server.port}\n`);
const stop = () => void server.close().then(() => process.exit(0));
process.on("SIGTERM", stop).on("SIGINT", stop);

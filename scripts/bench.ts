/**
 * `npm run bench`: the issue's figures, measured in one run on this machine against real parts: the
 * built `opencode-mcp` over stdio (MCP SDK client), a real `opencode serve`, real sockets and files.
 * The only fake is the scripted model server, which answers instantly, so every figure is relay and
 * opencode overhead rather than model time. Nothing leaves 127.0.0.1.
 *
 *  1. Discovery. A relay already runs on an empty registry; a registration is written atomically
 *     (dot-temp file, then rename) and `send` is called back to back until one succeeds. Figure: rename
 *     → successful reply returned, median of 3 fresh names (all pointing at the same opencode). Also,
 *     with 3 other names: rename → `instances` lists it online.
 *  2. `instances` latency with 1, 100 and 1000 registrations: the real opencode, 50 half-open ports
 *     (accept, never answer) and the rest refused ports (PRUNE_AFTER_MS is an hour, so none vanish).
 *     The relay starts after the files exist, so its first call is cold; then the median of 20 calls
 *     while the first health check is still running, and of 20 once every instance has been checked.
 *  3. `send` round trip minus a direct `POST /session/:id/message` on the same session and the same
 *     instance, alternating, 20 each; medians.
 *  4. First progress notification minus the first `message.part.delta` seen on our own direct
 *     `GET /event` subscription, per send; median over the sends of 5.
 *  5. 200 streamed sends of 8-chunk replies: the progress deltas the caller receives must be numbered
 *     in order, add up to the final reply, and equal the text the model server produced. Failures are
 *     counted, and split by where the deltas were lost: deltas the SDK client dropped as arriving with
 *     the reply (recovered from its protocol errors) are the client's, anything else the relay's.
 *  6. VmRSS of the relay process with 1000 registrations, after its first health check.
 *
 * Speed goals are printed, not asserted. Exit 1 only when the benchmark itself could not run.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { CallToolResult, Progress } from "@modelcontextprotocol/sdk/types.js";
import { RELAY_MAIN } from "../test/support/mcp.js";
import { startModelServer, type ModelServer } from "../test/support/model-server.js";
import { OPENCODE_BIN, startOpencode, type OpencodeInstance } from "../test/support/opencode.js";
import { closedPort } from "../test/support/socket-forward.js";
import { tempDir } from "../test/support/temp.js";
import { waitFor } from "../test/support/wait.js";

const DISCOVERY_RUNS = 3;
const ROUND_TRIPS = 20;
const STREAMED_SENDS = 200;
/** A long single session makes every turn slower (opencode resends the history): rotate. */
const SENDS_PER_SESSION = 25;
const SCALE_SIZES = [1, 100, 1000] as const;
const HALF_OPEN = 50;
const CALLS_PER_SAMPLE = 20;
/** Long enough that no refused registration is pruned while we measure. */
const NEVER_PRUNE_MS = "3600000";

const out = (s = "") => process.stdout.write(`${s}\n`);
const progressLine = (s: string) => process.stderr.write(`  … ${s}\n`);

// ---------------------------------------------------------------- statistics and formatting

function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Nearest-rank percentile: with 20 samples a p90 is one real sample, not an interpolation. */
function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

function ms(x: number, signed = false): string {
  if (!Number.isFinite(x)) return "n/a";
  const sign = signed && x >= 0 ? "+" : "";
  if (Math.abs(x) >= 10_000) return `${sign}${(x / 1000).toFixed(1)} s`;
  if (Math.abs(x) >= 100) return `${sign}${x.toFixed(0)} ms`;
  if (Math.abs(x) >= 10) return `${sign}${x.toFixed(1)} ms`;
  return `${sign}${x.toFixed(2)} ms`;
}

function times(ratio: number): string {
  if (!Number.isFinite(ratio)) return "n/a";
  return ratio >= 10 ? `${ratio.toFixed(0)}×` : `${ratio.toFixed(1)}×`;
}

/** "met (0.4× of goal)" / "MISSED (2.1× goal)", for an upper-bound goal. */
function versusGoal(measured: number, goal: number): string {
  if (!Number.isFinite(measured)) return "n/a";
  if (goal <= 0) return measured <= goal ? "met" : "MISSED";
  const r = measured / goal;
  return measured <= goal ? `met (${r.toFixed(2)}× of goal)` : `MISSED (${times(r)} goal)`;
}

function versusOld(measured: number, old: number): string {
  if (!Number.isFinite(measured)) return "n/a";
  if (measured <= 0) return "none left";
  const r = old / measured;
  return r >= 1 ? `${times(r)} better` : `${times(1 / r)} WORSE`;
}

interface Row {
  metric: string;
  measured: string;
  goal: string;
  old: string;
}

function printTable(rows: Row[]): void {
  const head: Row = { metric: "metric", measured: "measured", goal: "goal", old: "old tool" };
  const keys = ["metric", "measured", "goal", "old"] as const;
  const width = Object.fromEntries(keys.map((k) => [k, Math.max(...[head, ...rows].map((r) => r[k].length))])) as Record<(typeof keys)[number], number>;
  const line = (r: Row) => `| ${keys.map((k) => r[k].padEnd(width[k])).join(" | ")} |`;
  out(line(head));
  out(`|${keys.map((k) => "-".repeat(width[k] + 2)).join("|")}|`);
  for (const r of rows) out(line(r));
}

// ---------------------------------------------------------------- cleanup on every exit path

const cleanups: Array<() => unknown> = [];
let cleaning: Promise<void> | undefined;

function runCleanups(): Promise<void> {
  cleaning ??= (async () => {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        await c();
      } catch (err) {
        process.stderr.write(`bench: cleanup step failed: ${(err as Error).message}\n`);
      }
    }
  })();
  return cleaning;
}

// opencode runs in its own process group (detached) and would outlive an interrupted bench.
let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    interrupted = true;
    process.stderr.write(`\nbench: ${signal}, cleaning up\n`);
    void runCleanups().finally(() => process.exit(130));
  });
}

// ---------------------------------------------------------------- the relay, driven like a gateway

interface ToolReply {
  isError: boolean;
  text: string;
  structured: unknown;
}

interface BenchRelay {
  pid: number;
  /** Spawn to MCP `initialize` answered: includes the relay's initial registry scan. */
  startMs: number;
  protocolErrors: Error[];
  call(name: string, args?: Record<string, unknown>, onProgress?: (p: Progress) => void): Promise<ToolReply>;
  stderrTail(): string;
  close(): Promise<void>;
}

/** Like test/support/mcp.ts, but with the PID (for RSS) and the startup time. */
async function startBenchRelay(env: Record<string, string>): Promise<BenchRelay> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [RELAY_MAIN],
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", LOG_LEVEL: "error", ...env },
    stderr: "pipe",
  });
  let stderr = "";
  transport.stderr?.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-8_000)));
  const client = new Client({ name: "relay-bench", version: "1.0.0" });
  const protocolErrors: Error[] = [];
  client.onerror = (err) => protocolErrors.push(err);
  const started = performance.now();
  try {
    await client.connect(transport);
  } catch (err) {
    await transport.close().catch(() => {});
    throw new Error(`opencode-mcp did not start: ${(err as Error).message}\n${stderr}`);
  }
  const startMs = performance.now() - started;
  const pid = transport.pid;
  if (pid === null) throw new Error("opencode-mcp has no PID after starting");
  let closing: Promise<void> | undefined;
  const relay: BenchRelay = {
    pid,
    startMs,
    protocolErrors,
    stderrTail: () => stderr,
    async call(name, args = {}, onProgress) {
      const result = (await client.callTool(
        { name, arguments: args },
        undefined,
        onProgress ? { onprogress: onProgress, resetTimeoutOnProgress: true, timeout: 120_000 } : { timeout: 120_000 },
      )) as CallToolResult;
      const text = result.content.map((c) => (c.type === "text" ? c.text : "")).join("\n");
      return { isError: result.isError === true, text, structured: result.structuredContent };
    },
    close: () => (closing ??= client.close()),
  };
  cleanups.push(() => relay.close());
  return relay;
}

interface ListedInstance {
  name: string;
  status: string;
  problem?: string;
}

async function listInstances(relay: BenchRelay): Promise<ListedInstance[]> {
  const r = await relay.call("instances");
  if (r.isError) throw new Error(`instances failed: ${r.text}`);
  return (r.structured as { instances: ListedInstance[] }).instances;
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t = performance.now();
  const value = await fn();
  return { ms: performance.now() - t, value };
}

// ---------------------------------------------------------------- registrations and fake peers

/** Writes a registration; atomic ones the way a careful launcher does. Returns the time of the rename. */
function register(dir: string, name: string, port: number, atomic: boolean): number {
  const body = JSON.stringify({ name, hostname: "bench", port, localPort: port, cwd: `/bench/${name}`, connectedAt: new Date().toISOString() });
  const file = path.join(dir, `${name}.json`);
  if (!atomic) {
    writeFileSync(file, body, { mode: 0o600 });
    return performance.now();
  }
  const tmp = path.join(dir, `.${name}.json.tmp`);
  writeFileSync(tmp, body, { mode: 0o600 });
  const at = performance.now();
  renameSync(tmp, file);
  return at;
}

interface SilentServers {
  ports: number[];
  /** Most connections open at once since the last reset: shows how many probes ran in parallel. */
  peak: number;
  resetPeak(): void;
  close(): Promise<void>;
}

/** Half-open peers: TCP servers that accept and never answer, like a hung laptop behind a live tunnel. */
async function startSilentServers(n: number): Promise<SilentServers> {
  const sockets = new Set<net.Socket>();
  const servers: net.Server[] = [];
  const state: SilentServers = {
    ports: [],
    peak: 0,
    resetPeak: () => (state.peak = sockets.size),
    close: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all(servers.map((srv) => new Promise<void>((resolve) => srv.close(() => resolve()))));
    },
  };
  for (let i = 0; i < n; i++) {
    const server = net.createServer((s) => {
      sockets.add(s);
      state.peak = Math.max(state.peak, sockets.size);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {});
      // Read and discard: a paused socket never notices the peer's close, and would inflate `peak`.
      s.resume();
    });
    servers.push(server);
    await new Promise<void>((resolve, reject) => server.once("error", reject).listen(0, "127.0.0.1", () => resolve()));
    state.ports.push((server.address() as net.AddressInfo).port);
  }
  return state;
}

// ---------------------------------------------------------------- direct opencode API

async function createSession(oc: OpencodeInstance): Promise<string> {
  const res = await fetch(`${oc.url}/session`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
  if (!res.ok) throw new Error(`POST /session answered HTTP ${res.status}`);
  return ((await res.json()) as { id: string }).id;
}

/** The direct equivalent of a `send`: blocks until the turn ends, then returns the reply text. */
async function postMessage(oc: OpencodeInstance, sessionID: string, text: string): Promise<string> {
  const res = await fetch(`${oc.url}/session/${sessionID}/message`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ parts: [{ type: "text", text }] }),
  });
  if (!res.ok) throw new Error(`POST /session/${sessionID}/message answered HTTP ${res.status}: ${await res.text()}`);
  const reply = (await res.json()) as { parts?: Array<{ type: string; text?: string }> };
  return (reply.parts ?? []).filter((p) => p.type === "text").map((p) => p.text ?? "").join("");
}

/**
 * Our own `GET /event` subscription: reports the arrival time of every assistant text delta. The time is
 * taken when the bytes are read, before parsing, so parsing cost is not charged to the relay.
 */
async function openDirectFeed(oc: OpencodeInstance, onDelta: (sessionID: string, at: number) => void): Promise<{ close(): void }> {
  const ac = new AbortController();
  const res = await fetch(`${oc.url}/event`, { signal: ac.signal, headers: { accept: "text/event-stream" } });
  if (!res.ok || !res.body) throw new Error(`GET /event answered HTTP ${res.status}`);
  const reader = res.body.getReader();
  // opencode streams the user's own message too; only assistant text counts, as in the relay.
  const roles = new Map<string, string>();
  let connected!: () => void;
  const isConnected = new Promise<void>((resolve) => (connected = resolve));
  void (async () => {
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      const at = performance.now();
      buf += decoder.decode(value, { stream: true });
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const line = buf.slice(0, nl).replace(/\r$/, "");
        buf = buf.slice(nl + 1);
        if (!line.startsWith("data: ")) continue;
        let ev: { type?: string; properties?: Record<string, unknown> };
        try {
          ev = JSON.parse(line.slice(6)) as typeof ev;
        } catch {
          continue;
        }
        const p = ev.properties ?? {};
        if (ev.type === "server.connected") connected();
        else if (ev.type === "message.updated") {
          const info = p.info as { id: string; role: string } | undefined;
          if (info) roles.set(info.id, info.role);
        } else if (ev.type === "message.part.delta" && p.field === "text" && roles.get(String(p.messageID)) !== "user") {
          onDelta(String(p.sessionID), at);
        }
      }
    }
  })().catch(() => {
    /* aborted by close() */
  });
  await Promise.race([isConnected, new Promise((_, reject) => setTimeout(() => reject(new Error("no server.connected on GET /event within 10 s")), 10_000).unref())]);
  return { close: () => ac.abort() };
}

// ---------------------------------------------------------------- the measurements

interface DiscoveryResult {
  toSend: number[];
  toOnline: number[];
  sendAttempts: number[];
  /** How long the successful send itself took: the rest of `toSend` is discovery. */
  lastSend: number[];
}

async function measureDiscovery(relay: BenchRelay, registry: string, oc: OpencodeInstance, notes: string[]): Promise<DiscoveryResult> {
  const result: DiscoveryResult = { toSend: [], toOnline: [], sendAttempts: [], lastSend: [] };
  for (let run = 0; run < DISCOVERY_RUNS; run++) {
    const tag = String.fromCharCode(97 + run);

    const sendName = `fresh-send-${tag}`;
    const text = `Hello from ${sendName}.`;
    const renamed = register(registry, sendName, oc.port, true);
    let attempts = 0;
    for (;;) {
      attempts += 1;
      const { ms: took, value: r } = await timed(() => relay.call("send", { instance: sendName, message: `/chunks 3 ${text}` }));
      if (!r.isError) {
        result.toSend.push(performance.now() - renamed);
        result.lastSend.push(took);
        if (r.text !== text) notes.push(`discovery send to ${sendName} answered "${r.text}", expected "${text}"`);
        break;
      }
      if (performance.now() - renamed > 30_000) throw new Error(`no successful send to ${sendName} within 30 s of registering it; last answer: ${r.text}`);
    }
    result.sendAttempts.push(attempts);

    const listName = `fresh-list-${tag}`;
    const listedAt = register(registry, listName, oc.port, true);
    for (;;) {
      const all = await listInstances(relay);
      if (all.some((i) => i.name === listName && i.status === "online")) {
        result.toOnline.push(performance.now() - listedAt);
        break;
      }
      if (performance.now() - listedAt > 30_000) throw new Error(`${listName} not listed online within 30 s of registering it`);
    }
  }
  return result;
}

interface RoundTripResult {
  relay: number[];
  direct: number[];
}

async function measureRoundTrips(relay: BenchRelay, instance: string, oc: OpencodeInstance): Promise<RoundTripResult> {
  const session = await createSession(oc);
  const message = (i: number) => `/chunks 6 Round trip ${String(i).padStart(2, "0")}: the quick brown fox jumps over the lazy dog.`;
  // A session's first turn also asks the model for a title; keep that out of the samples.
  await postMessage(oc, session, message(99));
  const result: RoundTripResult = { relay: [], direct: [] };
  for (let i = 0; i < ROUND_TRIPS; i++) {
    const viaRelay = await timed(() => relay.call("send", { instance, message: message(i), session }));
    if (viaRelay.value.isError) throw new Error(`send failed during the round-trip benchmark: ${viaRelay.value.text}`);
    result.relay.push(viaRelay.ms);
    const direct = await timed(() => postMessage(oc, session, message(i)));
    result.direct.push(direct.ms);
  }
  return result;
}

interface StreamResult {
  /** First progress notification minus first direct delta, per send that had both. */
  lead: number[];
  /** Sends whose deltas, as the caller received them, were not exactly the reply. */
  failures: number;
  /**
   * Of those, sends whose missing deltas did leave the relay, in order, but reached the MCP SDK client in
   * the same read as the reply: the client dispatches notifications a microtask later than responses,
   * so it had already retired the progress token (modelcontextprotocol/typescript-sdk#2580).
   */
  clientRace: number;
  firstFailures: string[];
  lateNotifications: number;
  sendMs: number[];
}

interface Delta {
  message: string;
  progress: number;
}

/** The progress notifications the SDK client rejected as "unknown token", recovered from its error text. */
function lateDeltas(errors: Error[]): Delta[] {
  const found: Delta[] = [];
  for (const e of errors) {
    const json = /unknown token: (\{.*\})$/s.exec(e.message)?.[1];
    if (!json) continue;
    try {
      const n = JSON.parse(json) as { params?: { progress?: number; message?: string } };
      found.push({ message: n.params?.message ?? "", progress: n.params?.progress ?? NaN });
    } catch {
      /* not a notification we can read */
    }
  }
  return found;
}

const inOrder = (ds: Delta[]) => ds.every((d, k) => d.progress === k + 1);

async function measureStreaming(relay: BenchRelay, instance: string, oc: OpencodeInstance, model: ModelServer): Promise<StreamResult> {
  let watched = "";
  let firstDirect: number | undefined;
  const feed = await openDirectFeed(oc, (sessionID, at) => {
    if (sessionID === watched && firstDirect === undefined) firstDirect = at;
  });
  const result: StreamResult = { lead: [], failures: 0, clientRace: 0, firstFailures: [], lateNotifications: 0, sendMs: [] };
  const errorsBefore = relay.protocolErrors.length;
  try {
    let session = "";
    for (let i = 0; i < STREAMED_SENDS; i++) {
      if (i % SENDS_PER_SESSION === 0) {
        session = await createSession(oc);
        await postMessage(oc, session, "/chunks 2 warm up"); // title request out of the samples
      }
      const expected = `Stream ${i} ${randomBytes(4).toString("hex")}: the quick brown fox jumps over the lazy dog, then naps.`;
      const deltas: Delta[] = [];
      let firstProgress: number | undefined;
      watched = session;
      firstDirect = undefined;
      const repliesBefore = model.replies.length;
      const errorsBeforeSend = relay.protocolErrors.length;
      const sent = await timed(() =>
        relay.call("send", { instance, message: `/chunks 8 ${expected}`, session }, (p) => {
          firstProgress ??= performance.now();
          deltas.push({ message: p.message ?? "", progress: p.progress });
        }),
      );
      result.sendMs.push(sent.ms);
      const r = sent.value;
      const produced = model.replies.slice(repliesBefore);
      const problems: string[] = [];
      if (r.isError) problems.push(`send failed: ${r.text}`);
      if (r.text !== expected) problems.push(`reply ${JSON.stringify(r.text)} ≠ expected ${JSON.stringify(expected)}`);
      if (produced.length !== 1 || produced[0] !== expected) problems.push(`model produced ${JSON.stringify(produced)} for this turn`);
      const streamed = deltas.map((d) => d.message).join("");
      const streamOk = streamed === r.text && inOrder(deltas);
      if (!streamOk) problems.push(`deltas ${JSON.stringify(streamed)} (progress ${deltas.map((d) => d.progress).join(",") || "none"}) ≠ reply`);
      if (problems.length) {
        // Notifications written just before the reply may still be in the client's microtask queue.
        await new Promise((resolve) => setTimeout(resolve, 200));
        const late = lateDeltas(relay.protocolErrors.slice(errorsBeforeSend));
        const all = [...deltas, ...late];
        const relayOk = problems.length === 1 && !streamOk && inOrder(all) && all.map((d) => d.message).join("") === r.text;
        if (late.length) problems.push(`${late.length} more arrived with the reply and were dropped by the SDK client as "unknown token"`);
        result.failures += 1;
        if (relayOk) result.clientRace += 1;
        if (result.firstFailures.length < 3) result.firstFailures.push(`send ${i}${relayOk ? " (relay sent every delta in order; lost in the client)" : ""}: ${problems.join("; ")}`);
      }
      if (firstProgress !== undefined && firstDirect !== undefined) result.lead.push(firstProgress - firstDirect);
      if ((i + 1) % 50 === 0) progressLine(`${i + 1}/${STREAMED_SENDS} streamed sends`);
    }
  } finally {
    feed.close();
  }
  result.lateNotifications = lateDeltas(relay.protocolErrors.slice(errorsBefore)).length;
  return result;
}

interface ScaleResult {
  size: number;
  startMs: number;
  first: number;
  warm: number;
  checkedAfterMs: number;
  steady: number;
  listed: number;
  halfOpenPeak: number;
  rssMb?: number;
  hwmMb?: number;
}

function procStatusMb(pid: number, field: "VmRSS" | "VmHWM"): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

async function measureScale(size: number, root: string, oc: OpencodeInstance, silent: SilentServers, refusedPorts: number[]): Promise<ScaleResult> {
  const registry = path.join(root, `registry-${size}`);
  mkdirSync(registry, { mode: 0o700 });
  register(registry, "live", oc.port, false);
  const halfOpen = size > 1 ? Math.min(HALF_OPEN, size - 1) : 0;
  for (let i = 0; i < halfOpen; i++) register(registry, `hung-${String(i).padStart(4, "0")}`, silent.ports[i]!, false);
  for (let i = 0; i < size - 1 - halfOpen; i++) register(registry, `gone-${String(i).padStart(4, "0")}`, refusedPorts[i % refusedPorts.length]!, false);

  silent.resetPeak();
  const relay = await startBenchRelay({ RELAY_REGISTRY_DIR: registry, PRUNE_AFTER_MS: NEVER_PRUNE_MS });
  const startedAt = performance.now();
  try {
    const first = await timed(() => listInstances(relay));
    const warm: number[] = [];
    for (let i = 0; i < CALLS_PER_SAMPLE; i++) warm.push((await timed(() => listInstances(relay))).ms);
    // An instance has been checked once it is online/offline or carries a failure; a half-open one
    // stays "unknown" after its first timeout (two strikes before offline) but has a problem by then.
    await waitFor(async () => (await listInstances(relay)).every((i) => i.status !== "unknown" || i.problem !== undefined), {
      timeoutMs: 90_000,
      intervalMs: 100,
      what: `every one of ${size} instances to be health-checked`,
    });
    const checkedAfterMs = performance.now() - startedAt;
    const steady: number[] = [];
    for (let i = 0; i < CALLS_PER_SAMPLE; i++) steady.push((await timed(() => listInstances(relay))).ms);
    const result: ScaleResult = {
      size,
      startMs: relay.startMs,
      first: first.ms,
      warm: median(warm),
      checkedAfterMs,
      steady: median(steady),
      listed: first.value.length,
      halfOpenPeak: silent.peak,
    };
    const rss = procStatusMb(relay.pid, "VmRSS");
    const hwm = procStatusMb(relay.pid, "VmHWM");
    if (rss !== undefined) result.rssMb = rss;
    if (hwm !== undefined) result.hwmMb = hwm;
    return result;
  } finally {
    await relay.close();
  }
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const began = performance.now();
  if (!existsSync(RELAY_MAIN)) throw new Error(`${RELAY_MAIN} is missing: run npm run build (npm run bench does)`);
  if (!existsSync(OPENCODE_BIN)) throw new Error(`opencode binary not found at ${OPENCODE_BIN}: run npm install (the opencode-ai package provides it)`);

  const tmp = tempDir("ocr-bench-");
  cleanups.push(() => tmp.remove());
  const model = await startModelServer();
  cleanups.push(() => model.close());
  progressLine("starting opencode serve");
  const oc = await startOpencode({ modelUrl: model.url, project: "bench" });
  cleanups.push(() => oc.stop());
  // opencode's first turn loads providers and plugins (about a second); that is not relay overhead.
  await postMessage(oc, await createSession(oc), "/chunks 2 warm up");
  const silent = await startSilentServers(HALF_OPEN);
  cleanups.push(() => silent.close());
  const refusedPorts = await Promise.all(Array.from({ length: 8 }, () => closedPort()));
  const notes: string[] = [];

  // Metrics 1, 3, 4, 5: one relay that starts knowing nothing.
  const registry = path.join(tmp.path, "registry-live");
  mkdirSync(registry, { mode: 0o700 });
  const relay = await startBenchRelay({ RELAY_REGISTRY_DIR: registry, PRUNE_AFTER_MS: NEVER_PRUNE_MS, SEND_TIMEOUT_MS: "60000" });
  let discovery: DiscoveryResult;
  let trips: RoundTripResult;
  let stream: StreamResult;
  try {
    progressLine("1. registration → send / → listed online");
    discovery = await measureDiscovery(relay, registry, oc, notes);
    const instance = "fresh-send-a";
    progressLine("3. send vs direct POST round trips");
    trips = await measureRoundTrips(relay, instance, oc);
    progressLine(`4/5. ${STREAMED_SENDS} streamed sends`);
    stream = await measureStreaming(relay, instance, oc, model);
  } catch (err) {
    throw new Error(`${(err as Error).message}\nopencode-mcp stderr (tail):\n${relay.stderrTail()}`, { cause: err });
  } finally {
    await relay.close();
  }

  // Metrics 2 and 6: a fresh relay per registry size, started after the files are in place.
  const scale: ScaleResult[] = [];
  for (const size of SCALE_SIZES) {
    progressLine(`2. instances with ${size} registration${size === 1 ? "" : "s"}`);
    scale.push(await measureScale(size, tmp.path, oc, silent, refusedPorts));
  }

  // ------------------------------------------------------------ report
  const rows: Row[] = [];
  const toSend = median(discovery.toSend);
  rows.push({
    metric: `1. registration → successful send (median of ${DISCOVERY_RUNS})`,
    measured: `${ms(toSend)} [${discovery.toSend.map((x) => ms(x)).join(", ")}]`,
    goal: `≤ 200 ms: ${versusGoal(toSend, 200)}`,
    old: `22 s: ${versusOld(toSend, 22_000)}`,
  });
  const toOnline = median(discovery.toOnline);
  rows.push({
    metric: `   registration → listed online (median of ${DISCOVERY_RUNS})`,
    measured: `${ms(toOnline)} [${discovery.toOnline.map((x) => ms(x)).join(", ")}]`,
    goal: "-",
    old: `22 s: ${versusOld(toOnline, 22_000)}`,
  });
  for (const s of scale) {
    const label = `${s.size} registration${s.size === 1 ? "" : "s"}${s.size > 1 ? ` (${Math.min(HALF_OPEN, s.size - 1)} half-open)` : ""}`;
    rows.push({ metric: `2. instances, ${label}: first call`, measured: ms(s.first), goal: `≤ 50 ms: ${versusGoal(s.first, 50)}`, old: `3 s: ${versusOld(s.first, 3_000)}` });
    rows.push({ metric: `   … median of ${CALLS_PER_SAMPLE}, first health check running`, measured: ms(s.warm), goal: `≤ 50 ms: ${versusGoal(s.warm, 50)}`, old: "-" });
    rows.push({ metric: `   … median of ${CALLS_PER_SAMPLE}, all checked`, measured: ms(s.steady), goal: `≤ 50 ms: ${versusGoal(s.steady, 50)}`, old: "-" });
  }
  const overhead = median(trips.relay) - median(trips.direct);
  rows.push({
    metric: `3. send minus direct POST /session/:id/message (medians, ${ROUND_TRIPS} each)`,
    measured: `${ms(overhead, true)} (${ms(median(trips.relay))} vs ${ms(median(trips.direct))})`,
    goal: `≤ +15 ms: ${versusGoal(overhead, 15)}`,
    old: `+78 ms: ${versusOld(overhead, 78)}`,
  });
  const lead = median(stream.lead);
  rows.push({
    metric: `4. first progress minus first direct SSE delta (median of ${stream.lead.length})`,
    measured: `${ms(lead, true)} (p90 ${ms(percentile(stream.lead, 90), true)})`,
    goal: `≤ 5 ms: ${versusGoal(lead, 5)}`,
    old: "-",
  });
  rows.push({
    metric: `5. sends with lost or reordered deltas (of ${STREAMED_SENDS})`,
    measured: stream.failures === 0 ? "0" : `${stream.failures} (${stream.clientRace} lost in the MCP SDK client, ${stream.failures - stream.clientRace} by the relay)`,
    goal: `0: ${stream.failures === 0 ? "met" : "MISSED"}`,
    old: "early deltas lost",
  });
  const big = scale.find((s) => s.size === 1000);
  rows.push({
    metric: "6. relay RSS, 1000 registrations, after a health sweep",
    measured: big?.rssMb === undefined ? "n/a (no /proc)" : `${big.rssMb.toFixed(1)} MB (peak ${big.hwmMb?.toFixed(1) ?? "?"} MB)`,
    goal: `≤ 150 MB: ${big?.rssMb === undefined ? "n/a" : versusGoal(big.rssMb, 150)}`,
    old: "-",
  });

  out();
  printTable(rows);
  out();
  out("Context:");
  out(
    `- discovery: send attempts per run ${discovery.sendAttempts.join(", ")}; the successful send itself took ${discovery.lastSend.map((x) => ms(x)).join(", ")}` +
      ` (a direct opencode turn: ${ms(median(trips.direct))})`,
  );
  out(`- streamed send round trip: median ${ms(median(stream.sendMs))}, p90 ${ms(percentile(stream.sendMs, 90))}`);
  for (const s of scale) {
    out(
      `- ${s.size} registration${s.size === 1 ? "" : "s"}: relay ready (spawn → initialize) ${ms(s.startMs)}, listed ${s.listed}, all checked ${ms(s.checkedAfterMs)} after ready` +
        `, RSS ${s.rssMb?.toFixed(1) ?? "n/a"} MB` +
        (s.size > 1 ? `, most half-open probes in flight at once: ${s.halfOpenPeak} (HEALTH_CONCURRENCY 16)` : ""),
    );
  }
  if (stream.lateNotifications) out(`- ${stream.lateNotifications} progress notifications reached the SDK client after it had taken the reply (typescript-sdk#2580)`);
  for (const f of stream.firstFailures) out(`- failure: ${f}`);
  for (const n of notes) out(`- note: ${n}`);
  out(`- machine: ${os.cpus().length} CPUs, node ${process.version}; bench took ${ms(performance.now() - began)}`);
}

main()
  .then(() => runCleanups())
  .then(() => process.exit(interrupted ? 130 : 0))
  .catch(async (err: unknown) => {
    // Cleanup after a signal kills what main was using; its errors then are ours, not the relay's.
    if (interrupted) return;
    process.stderr.write(`\nbench: could not run: ${err instanceof Error ? err.message : String(err)}\n`);
    await runCleanups();
    process.exit(1);
  });

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
 * The launcher, `opencode-connected --serve` (built), each run with its own opencode and workspace, against
 * OpenSSH's sshd on 127.0.0.1 as the relay and a relay (`opencode-mcp`) reading that registry:
 *  7. Spawn → registration file in the relay's registry, minus opencode's own start (spawned → first
 *     answer to our own `GET /global/health` probes, every 10 ms): what the launcher adds before it
 *     spawns opencode (ssh connect) and after opencode answers (noticing it, writing the registration).
 *     Median of 3 launchers with different names.
 *  8. The same 3 launchers, once each after a successful send: sshd drops every connection (SIGKILL), then
 *     `send` on the same session every 20 ms until one succeeds. A fresh launcher per drop, so each
 *     reconnects after its first backoff step (0.5 s); repeated drops within 60 s back off longer.
 *  9. Half-open: the relay side of a fourth launcher's connection is frozen (SIGSTOP on sshd's session
 *     processes and what they run; the listener still accepts), so only the launcher notices: its checks go
 *     unanswered for 30 s (CHECK_DEAD_MS), or ssh's keepalive gives up (about a minute). Freeze →
 *     a send succeeds; sends start once the registration carries a new nonce (before that there is
 *     nothing to reach, and a send to the frozen tunnel would only wait for the relay's health timeout).
 *
 * 10. The chaos suite (test/chaos): relay and laptops in network namespaces, every fault injected while
 *     turns run, and the load run; its report table is printed here as it is by `npm run test:chaos`.
 *     BENCH_CHAOS=0 leaves it out (it takes several minutes); it needs root, like the suite.
 *
 * As root, the bench runs in a network namespace with only loopback (scripts/offline.ts).
 * Speed goals are printed, not asserted. Exit 1 only when the benchmark itself could not run.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, watch, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import type { CallToolResult, Progress } from "@modelcontextprotocol/sdk/types.js";
import { PACKAGE_ROOT } from "../src/shared/package-info.js";
import { launcherWorkspace } from "../test/support/launcher-workspace.js";
import { RELAY_MAIN, startRelay } from "../test/support/mcp.js";
import { startModelServer, type ModelServer } from "../test/support/model-server.js";
import { OPENCODE_BIN, startOpencode, type OpencodeInstance } from "../test/support/opencode.js";
import { alive, descendants } from "../test/support/procs.js";
import { closedPort } from "../test/support/socket-forward.js";
import { startSshd, type Sshd } from "../test/support/sshd.js";
import { tempDir } from "../test/support/temp.js";
import { waitFor } from "../test/support/wait.js";
import { NetnsUnavailableError } from "../test/chaos/netns.js";
import { printReport, runChaos } from "../test/chaos/run.js";
import { rerunOffline } from "./offline.js";
import { CHECK_DEAD_MS } from "../src/launcher/tunnel.js";

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

/** test/support/mcp.ts's relay client, plus the startup time, raw progress and structured results. */
async function startBenchRelay(env: Record<string, string>): Promise<BenchRelay> {
  const started = performance.now();
  const r = await startRelay({ LOG_LEVEL: "error", ...env });
  const startMs = performance.now() - started;
  let closing: Promise<void> | undefined;
  const close = () => (closing ??= r.close());
  cleanups.push(close);
  const pid = r.pid;
  if (pid === null) throw new Error("opencode-mcp has no PID after starting");
  return {
    pid,
    startMs,
    protocolErrors: r.protocolErrors,
    stderrTail: () => r.stderr().slice(-8_000),
    async call(name, args = {}, onProgress) {
      const result = (await r.client.callTool(
        { name, arguments: args },
        undefined,
        onProgress ? { onprogress: onProgress, resetTimeoutOnProgress: true, timeout: 120_000 } : { timeout: 120_000 },
      )) as CallToolResult;
      const text = result.content.map((c) => (c.type === "text" ? c.text : "")).join("\n");
      return { isError: result.isError === true, text, structured: result.structuredContent };
    },
    close,
  };
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

// ---------------------------------------------------------------- the launcher, against a real sshd

const LAUNCHER_MAIN = path.join(PACKAGE_ROOT, "dist", "src", "launcher", "main.js");
const LAUNCHER_RUNS = 3;
/** The launcher's ssh keepalive (src/launcher/tunnel.ts): the outer bound of half-open detection. */
const SERVER_ALIVE_INTERVAL_MS = 15_000;
/** ssh's dead-peer detection (ServerAliveInterval 15 s, ServerAliveCountMax 3) plus a reconnect, with room. */
const HALF_OPEN_LIMIT_MS = 120_000;

const sleep = (msec: number) => new Promise<void>((resolve) => setTimeout(resolve, msec));

function tryKill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    /* already gone */
  }
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ").slice(0, 120);
  } catch {
    return "?";
  }
}

interface LauncherReg {
  socket?: string;
  nonce?: string;
  version?: string;
}

function readReg(file: string): LauncherReg | undefined {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as LauncherReg;
  } catch {
    return undefined;
  }
}

interface LogLine {
  at: number;
  msg: string;
  rest: string;
}

/** The launcher's log lines ("<ISO time> <LEVEL> <message> k=v …") whose message starts with `msg`, from `since` on. */
function logLines(log: string, msg: string, since = 0): LogLine[] {
  const found: LogLine[] = [];
  for (const line of log.split("\n")) {
    const m = /^(\S+) [A-Z]+ +(.*)$/.exec(line);
    if (!m || !m[2]!.startsWith(msg)) continue;
    const at = Date.parse(m[1]!);
    if (at >= since) found.push({ at, msg, rest: m[2]!.slice(msg.length).trim() });
  }
  return found;
}

/** A field of a log line: `detail="…"` or `inMs=512`. */
function logField(rest: string, key: string): string | undefined {
  const m = new RegExp(`\\b${key}=("(?:[^"\\\\]|\\\\.)*"|\\S+)`).exec(rest);
  if (!m) return undefined;
  try {
    return m[1]!.startsWith('"') ? (JSON.parse(m[1]!) as string) : m[1];
  } catch {
    return m[1];
  }
}

interface BenchLauncher {
  name: string;
  regFile: string;
  /** Date.now() just before the spawn: the launcher's log uses the same clock. */
  spawnedAt: number;
  password: string;
  running(): boolean;
  log(): string;
  output(): string;
  /** SIGTERM and wait; anything of its process tree still alive after that is killed and returned. */
  stop(): Promise<string[]>;
}

/** `opencode-connected --serve` in its own workspace, set up like test/e2e/launcher.test.ts. */
function startBenchLauncher(base: string, name: string, sshd: Sshd, registry: string, modelUrl: string): BenchLauncher {
  // Set rather than random so the bench can probe opencode's health itself; the launcher keeps it.
  const password = randomBytes(18).toString("base64url");
  const { cwd, env, logFile } = launcherWorkspace({
    base: path.join(base, "launchers"),
    name,
    modelUrl,
    sshCmd: sshd.sshCmd,
    registry,
    extra: { OPENCODE_SERVER_PASSWORD: password },
  });
  const spawnedAt = Date.now();
  const child = spawn(process.execPath, [LAUNCHER_MAIN, "--serve"], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const collect = (d: Buffer) => (output = (output + d.toString()).slice(-8_000));
  child.stdout!.on("data", collect);
  child.stderr!.on("data", collect);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const pid = child.pid!;
  const running = () => child.exitCode === null && child.signalCode === null;
  let stopping: Promise<string[]> | undefined;
  const launcher: BenchLauncher = {
    name,
    regFile: path.join(registry, `${name}.json`),
    spawnedAt,
    password,
    running,
    log: () => {
      try {
        return readFileSync(logFile, "utf8");
      } catch {
        return "";
      }
    },
    output: () => output,
    stop: () =>
      (stopping ??= (async () => {
        const tree = [pid, ...descendants(pid)];
        if (running()) {
          child.kill("SIGTERM");
          await Promise.race([exited, sleep(15_000)]);
        }
        for (let waited = 0; tree.some((p) => alive(p)) && waited < 3_000; waited += 50) await sleep(50);
        const left = tree.filter((p) => alive(p)).map((p) => `${p} (${commandOf(p)})`);
        for (const p of tree) if (alive(p)) tryKill(p, "SIGKILL");
        await Promise.race([exited, sleep(2_000)]);
        return left;
      })()),
  };
  cleanups.push(() => launcher.stop());
  return launcher;
}

/** Times on the wall clock (ms since the epoch), as in the launcher's log. */
interface StartSample {
  name: string;
  spawnedAt: number;
  sshSpawned: number;
  tunnelUp: number;
  opencodeStarted: number;
  /** First answer to our own health probes (every 10 ms); the launcher's log time when we had none. */
  opencodeAnswered: number;
  answeredByProbe: boolean;
  /** The launcher's "opencode is answering" (it probes every 100 ms, each probe waiting up to 1 s). */
  launcherNoticed: number;
  registered: number;
}

const beforeOpencode = (s: StartSample) => s.opencodeStarted - s.spawnedAt;
const afterOpencode = (s: StartSample) => s.registered - s.opencodeAnswered;
const launcherOverhead = (s: StartSample) => beforeOpencode(s) + afterOpencode(s);

async function watchLauncherStart(l: BenchLauncher): Promise<StartSample> {
  let registered: number | undefined;
  const check = () => {
    if (registered === undefined && existsSync(l.regFile)) registered = Date.now();
  };
  const watcher = watch(path.dirname(l.regFile), check);
  watcher.on("error", () => {});
  const poll = setInterval(check, 5);
  const authorization = `Basic ${Buffer.from(`opencode:${l.password}`).toString("base64")}`;
  let port: number | undefined;
  let answered: number | undefined;
  let inFlight = 0;
  let probedAt = 0;
  try {
    while (registered === undefined) {
      if (!l.running()) throw new Error(`${l.name}: the launcher exited before registering: ${l.output().trim()}`);
      if (Date.now() - l.spawnedAt > 60_000) throw new Error(`${l.name}: no registration within 60 s of starting the launcher`);
      if (port === undefined) {
        const p = Number(/ opencode started .*\bport=(\d+)/.exec(l.log())?.[1]);
        if (p) port = p;
      } else if (answered === undefined && inFlight < 25 && Date.now() - probedAt >= 10) {
        // Every 10 ms, not awaited, each given up after 250 ms: a connection made while opencode starts
        // can hang, and must not hide the first answer.
        inFlight += 1;
        probedAt = Date.now();
        void fetch(`http://127.0.0.1:${port}/global/health`, { headers: { authorization }, signal: AbortSignal.timeout(250) })
          .then(async (res) => {
            const at = Date.now();
            const healthy = res.ok && (res.headers.get("content-type") ?? "").includes("json") && ((await res.json()) as { healthy?: boolean }).healthy === true;
            if (healthy) answered ??= at;
          })
          .catch(() => {})
          .finally(() => (inFlight -= 1));
      }
      await sleep(5);
    }
  } finally {
    clearInterval(poll);
    watcher.close();
  }
  // The log stream may be a moment behind the registration.
  const log = await waitFor(() => {
    const text = l.log();
    return logLines(text, "opencode is answering").length ? text : undefined;
  }, { timeoutMs: 5_000, what: `${l.name}'s log to say opencode is answering` });
  const first = (msg: string) => logLines(log, msg)[0]?.at ?? NaN;
  const launcherNoticed = first("opencode is answering");
  return {
    name: l.name,
    spawnedAt: l.spawnedAt,
    sshSpawned: first("starting ssh"),
    tunnelUp: first("tunnel up"),
    opencodeStarted: first("opencode started"),
    opencodeAnswered: answered ?? launcherNoticed,
    answeredByProbe: answered !== undefined,
    launcherNoticed,
    registered,
  };
}

interface SendOk {
  reply: ToolReply;
  attempts: number;
  /** The error text of the last failed attempt, if any. */
  lastError?: string;
}

/** `send` back to back (20 ms apart) until one succeeds. */
async function sendUntilOk(relay: BenchRelay, instance: string, message: string, session: string | undefined, timeoutMs: number): Promise<SendOk> {
  const deadline = Date.now() + timeoutMs;
  let lastError: string | undefined;
  for (let attempts = 1; ; attempts++) {
    const reply = await relay.call("send", { instance, message, ...(session ? { session } : {}) });
    if (!reply.isError) return { reply, attempts, ...(lastError ? { lastError } : {}) };
    lastError = reply.text;
    if (Date.now() > deadline) throw new Error(`no successful send to ${instance} within ${timeoutMs} ms; last answer: ${reply.text}`);
    await sleep(20);
  }
}

/** What happened after a cut, as offsets (ms) from the moment of the cut. */
interface RecoverySample {
  name: string;
  /** Cut → first successful send: the figure. */
  total: number;
  attempts: number;
  lastError?: string;
  tunnelDown: number;
  downDetail: string;
  backoffMs: number;
  tunnelUp: number;
  newRegistration: number;
  replyOk: boolean;
  /** Processes frozen (half-open only). */
  frozen?: number;
}

/**
 * Runs `cut` at t0 and measures until a send on the warm session succeeds, noting when the new
 * registration (a new nonce) appeared and what the launcher logged in between.
 */
async function measureRecovery(l: BenchLauncher, relay: BenchRelay, cut: () => void, waitForNewRegistration: boolean, timeoutMs: number): Promise<RecoverySample> {
  const warm = await sendUntilOk(relay, l.name, "warm up", undefined, 30_000);
  const session = (warm.reply.structured as { session?: string } | undefined)?.session;
  const before = readReg(l.regFile)?.nonce;
  if (!session || !before) throw new Error(`${l.name}: no session (${session}) or nonce (${before}) before the cut`);
  let newRegAt: number | undefined;
  const poll = setInterval(() => {
    const nonce = readReg(l.regFile)?.nonce;
    if (newRegAt === undefined && nonce && nonce !== before) newRegAt = performance.now();
  }, 5);
  const message = `back after the cut ${randomBytes(3).toString("hex")}`;
  const cutAt = Date.now();
  const t0 = performance.now();
  try {
    cut();
    // A send to the half-open tunnel would hang until the relay's health check gives up on it; a caller
    // cannot do better than to retry, so start once there is something new to reach.
    if (waitForNewRegistration) {
      await waitFor(() => newRegAt !== undefined, { timeoutMs, intervalMs: 5, what: `${l.name} to register again (a new nonce) after the cut` });
    }
    const ok = await sendUntilOk(relay, l.name, message, session, timeoutMs - (performance.now() - t0));
    const total = performance.now() - t0;
    const log = l.log();
    const down = logLines(log, "tunnel down", cutAt)[0];
    const reconnect = logLines(log, "reconnecting", cutAt)[0];
    return {
      name: l.name,
      total,
      attempts: ok.attempts,
      ...(ok.lastError ? { lastError: ok.lastError } : {}),
      tunnelDown: (down?.at ?? NaN) - cutAt,
      downDetail: down ? (logField(down.rest, "detail") ?? "") : "not logged",
      backoffMs: Number(reconnect ? logField(reconnect.rest, "inMs") : NaN),
      tunnelUp: (logLines(log, "tunnel up", cutAt)[0]?.at ?? NaN) - cutAt,
      newRegistration: newRegAt === undefined ? NaN : newRegAt - t0,
      replyOk: ok.reply.text === `Reply to: ${message}`,
    };
  } finally {
    clearInterval(poll);
  }
}

interface LauncherResult {
  starts: StartSample[];
  drops: RecoverySample[];
  halfOpen: RecoverySample;
  /** Processes still alive after a launcher's SIGTERM, and registrations it left. */
  leftovers: string[];
}

/** Metrics 7-9: `opencode-connected --serve` against OpenSSH's sshd on 127.0.0.1, read by a real relay. */
async function measureLauncher(base: string, model: ModelServer): Promise<LauncherResult> {
  const sshd = await startSshd();
  cleanups.push(() => sshd.close());
  const registry = path.join(base, "registry-launcher");
  mkdirSync(registry, { mode: 0o700 });
  const relay = await startBenchRelay({ RELAY_REGISTRY_DIR: registry, HEALTH_INTERVAL_MS: "1000", HEALTH_CHECK_TIMEOUT_MS: "1000", SEND_TIMEOUT_MS: "30000" });
  const starts: StartSample[] = [];
  const drops: RecoverySample[] = [];
  const leftovers: string[] = [];
  let current: BenchLauncher | undefined;
  const stop = async (l: BenchLauncher) => {
    const left = await l.stop();
    leftovers.push(...left.map((p) => `${l.name}: process ${p} outlived the launcher`));
    const gone = await waitFor(() => !existsSync(l.regFile), { timeoutMs: 5_000, what: `${l.name}'s registration to be removed` }).catch(() => false);
    if (!gone) leftovers.push(`${l.name}: registration still in the registry after the launcher exited`);
  };
  try {
    for (let run = 0; run < LAUNCHER_RUNS; run++) {
      const l = (current = startBenchLauncher(base, `laptop-${String.fromCharCode(97 + run)}`, sshd, registry, model.url));
      try {
        progressLine(`7. launcher start → registration, run ${run + 1}/${LAUNCHER_RUNS}`);
        starts.push(await watchLauncherStart(l));
        progressLine(`8. relay drops the connection, run ${run + 1}/${LAUNCHER_RUNS}`);
        drops.push(await measureRecovery(l, relay, () => sshd.dropConnections(), false, 30_000));
      } finally {
        await stop(l);
      }
    }

    // A launcher of its own, so its backoff starts fresh as in the drop runs.
    const l = (current = startBenchLauncher(base, "laptop-frozen", sshd, registry, model.url));
    let frozen: number[] = [];
    const thaw = () => {
      for (const p of frozen) {
        tryKill(p, "SIGKILL");
        tryKill(p, "SIGCONT");
      }
    };
    cleanups.push(thaw);
    let halfOpen: RecoverySample;
    try {
      await waitFor(() => readReg(l.regFile)?.version, { timeoutMs: 60_000, what: `${l.name} to register` });
      progressLine("9. half-open tunnel: the relay's side frozen (the launcher's unanswered checks take 30 s)");
      const freeze = () => {
        // Only the per-connection processes and what they run: the listener keeps accepting.
        const listener = sshd.listenerPid();
        for (let pass = 0; pass < 2; pass++) {
          const sessions = sshd.sessionPids();
          const pids = [...new Set([...sessions, ...sessions.flatMap((p) => descendants(p))])].filter((p) => p !== listener && !frozen.includes(p));
          for (const p of pids) tryKill(p, "SIGSTOP");
          frozen.push(...pids);
        }
        if (frozen.length === 0) throw new Error("no sshd session processes to freeze");
      };
      halfOpen = { ...(await measureRecovery(l, relay, freeze, true, HALF_OPEN_LIMIT_MS)), frozen: frozen.length };
    } finally {
      thaw();
      frozen = [];
      await stop(l);
    }
    return { starts, drops, halfOpen, leftovers };
  } catch (err) {
    const tail = (s: string) => s.trim().split("\n").slice(-15).join("\n");
    throw new Error(
      `${(err as Error).message}\n--- launcher ${current?.name} log (tail) ---\n${tail(current?.log() ?? "")}\n--- its output ---\n${tail(current?.output() ?? "")}` +
        `\n--- sshd log (tail) ---\n${tail(sshd.log())}\n--- opencode-mcp stderr (tail) ---\n${tail(relay.stderrTail())}`,
      { cause: err },
    );
  } finally {
    await relay.close();
    await sshd.close();
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

  // Metrics 7, 8, 9: opencode-connected against a real sshd, each launcher with its own opencode.
  const launcher = await measureLauncher(tmp.path, model);

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
  const overheads = launcher.starts.map(launcherOverhead);
  const overhead7 = median(overheads);
  rows.push({
    metric: `7. launcher start → registered on the relay, minus opencode's own start (median of ${LAUNCHER_RUNS})`,
    measured: `${ms(overhead7)} [${overheads.map((x) => ms(x)).join(", ")}]`,
    goal: `≤ 1 s: ${versusGoal(overhead7, 1_000)}`,
    old: "-",
  });
  rows.push({
    metric: "   … before opencode is spawned (node start, ssh connect, relay script ready)",
    measured: ms(median(launcher.starts.map(beforeOpencode))),
    goal: "-",
    old: "-",
  });
  rows.push({
    metric: "   … after opencode answers (noticing it, writing the registration)",
    measured: ms(median(launcher.starts.map(afterOpencode))),
    goal: "-",
    old: "-",
  });
  rows.push({
    metric: "   … of which until the launcher's own health probe saw the answer",
    measured: ms(median(launcher.starts.map((st) => st.launcherNoticed - st.opencodeAnswered))),
    goal: "-",
    old: "-",
  });
  const drops = launcher.drops.map((d) => d.total);
  const drop = median(drops);
  rows.push({
    metric: `8. relay drops the connection → send works again (median of ${LAUNCHER_RUNS})`,
    measured: `${ms(drop)} [${drops.map((x) => ms(x)).join(", ")}]`,
    goal: `≤ 2 s: ${versusGoal(drop, 2_000)}`,
    old: `5–65 s: ${versusOld(drop, 5_000)} than its best`,
  });
  const half = launcher.halfOpen.total;
  rows.push({
    metric: "9. half-open tunnel (relay side frozen) → send works again",
    measured: ms(half),
    goal: `≤ 60 s: ${versusGoal(half, 60_000)}`,
    old: `up to 90 s: ${versusOld(half, 90_000)}`,
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
  for (const st of launcher.starts) {
    const at = (t: number) => ms(t - st.spawnedAt);
    out(
      `- launcher start ${st.name}: registered ${at(st.registered)} after spawn; ssh spawned ${at(st.sshSpawned)}, tunnel up ${at(st.tunnelUp)}` +
        ` (ssh connect ${ms(st.tunnelUp - st.sshSpawned)}), opencode spawned ${at(st.opencodeStarted)}, answered ${at(st.opencodeAnswered)}` +
        `${st.answeredByProbe ? ` (launcher noticed ${ms(st.launcherNoticed - st.opencodeAnswered)} later)` : " (launcher's log time)"}: opencode's own start ${ms(st.opencodeAnswered - st.opencodeStarted)}`,
    );
  }
  const recovery = (r: RecoverySample) =>
    `tunnel down +${ms(r.tunnelDown)} (${r.downDetail}), reconnect after ${Number.isFinite(r.backoffMs) ? `${r.backoffMs} ms` : "?"}, tunnel up +${ms(r.tunnelUp)}, ` +
    `new registration +${ms(r.newRegistration)}, send ok +${ms(r.total)} (${r.attempts} attempt${r.attempts === 1 ? "" : "s"}${r.replyOk ? "" : ", UNEXPECTED REPLY"})`;
  for (const d of launcher.drops) out(`- drop ${d.name}: ${recovery(d)}`);
  const h = launcher.halfOpen;
  out(
    `- half-open ${h.name} (${h.frozen} sshd processes SIGSTOPped): ${recovery(h)}; sends started at the new registration;` +
      ` the launcher gave up on the connection after ${ms(h.tunnelDown)} (${(h.tunnelDown / CHECK_DEAD_MS).toFixed(2)} × its 30 s check deadline; ssh's ServerAlive would take ${(4 * SERVER_ALIVE_INTERVAL_MS) / 1000} s)`,
  );
  for (const left of launcher.leftovers) out(`- LEFT BEHIND: ${left}`);
  for (const n of notes) out(`- note: ${n}`);
  out(`- machine: ${os.cpus().length} CPUs, node ${process.version}; bench took ${ms(performance.now() - began)}`);

  out();
  if (process.env.BENCH_CHAOS === "0") {
    out("10. chaos suite: left out (BENCH_CHAOS=0); run npm run test:chaos");
    return;
  }
  out("10. chaos suite (the same run as npm run test:chaos):");
  try {
    printReport(await runChaos({ log: progressLine }), out);
  } catch (err) {
    if (!(err instanceof NetnsUnavailableError)) throw err;
    out(`   not run: ${err.message}`);
  }
}

const offline = rerunOffline((l) => process.stderr.write(`bench: ${l}\n`));
if (offline !== undefined) process.exit(offline);

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

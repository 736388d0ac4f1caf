/**
 * The machines of the chaos suite, real parts throughout: a relay namespace with a real sshd and the built
 * `opencode-mcp` (driven over stdio by the real MCP SDK client, restarted by that client when it dies, as
 * a gateway would), and laptop namespaces each with the scripted model and supervised `opencode-connected
 * --serve` launchers running real opencode through real ssh tunnels to the relay.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdirSync, mkdtempSync, rmSync, type WriteStream } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { PACKAGE_ROOT } from "../../src/shared/package-info.js";
import { launcherWorkspace, type LauncherWorkspace } from "../support/launcher-workspace.js";
import { RELAY_MAIN } from "../support/mcp.js";
import { descendants } from "../support/procs.js";
import { startSshd, type Sshd } from "../support/sshd.js";
import { waitFor } from "../support/wait.js";
import { commOf, Network, type LaptopLink } from "./netns.js";

const LAUNCHER_MAIN = path.join(PACKAGE_ROOT, "dist", "src", "launcher", "main.js");
const MODEL_MAIN = path.join(PACKAGE_ROOT, "dist", "test", "chaos", "model-main.js");
/** The supervisor's pause before restarting a launcher that died (systemd's RestartSec; our unit says 10 s). */
export const RESTART_SEC_MS = 1_000;

function tryKill(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, signal);
  } catch {
    /* gone */
  }
}

function exitOf(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  const exited = exitOf(child);
  child.kill("SIGTERM");
  const done = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), graceMs).unref())]);
  if (!done) {
    child.kill("SIGKILL");
    await exited;
  }
}

export interface ToolOutcome {
  ok: boolean;
  text: string;
  structured?: Record<string, unknown>;
}

/**
 * The MCP client side, as an MCP gateway runs it: starts `opencode-mcp` in the relay namespace over stdio
 * and, when the server process dies, starts it again at once.
 */
export class McpLink {
  restarts = 0;
  #client: Client | undefined;
  #transport: StdioClientTransport | undefined;
  #connecting: Promise<Client> | undefined;
  #closing = false;
  readonly #log: WriteStream;

  constructor(
    private readonly ns: string,
    private readonly env: Record<string, string>,
    logFile: string,
  ) {
    this.#log = createWriteStream(logFile, { flags: "a" });
  }

  get pid(): number | undefined {
    return this.#transport?.pid ?? undefined;
  }

  connect(): Promise<Client> {
    return (this.#connecting ??= this.#start());
  }

  async #start(): Promise<Client> {
    const transport = new StdioClientTransport({
      command: "ip",
      args: ["netns", "exec", this.ns, process.execPath, RELAY_MAIN],
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", ...this.env },
      stderr: "pipe",
    });
    transport.stderr?.on("data", (d: Buffer) => this.#log.write(d));
    const client = new Client({ name: "chaos-gateway", version: "1.0.0" });
    client.onclose = () => {
      if (this.#client !== client || this.#closing) return;
      // The server died: like a gateway, start a new one right away.
      this.#client = undefined;
      this.#transport = undefined;
      this.#connecting = undefined;
      this.restarts++;
      this.#log.write(`--- chaos: opencode-mcp exited; restarting (${this.restarts}) ---\n`);
      void this.connect().catch((err: unknown) => this.#log.write(`--- chaos: restart failed: ${String(err)} ---\n`));
    };
    await client.connect(transport);
    this.#client = client;
    this.#transport = transport;
    return client;
  }

  /** One tool call; transport failures become `ok: false` with the error's text (a fault may cause them). */
  async call(name: string, args: Record<string, unknown> = {}, timeoutMs = 90_000): Promise<ToolOutcome> {
    try {
      const client = await this.connect();
      const result = (await client.callTool({ name, arguments: args }, undefined, { timeout: timeoutMs })) as CallToolResult;
      const text = result.content.map((c) => (c.type === "text" ? c.text : "")).join("\n");
      return { ok: !result.isError, text, ...(result.structuredContent ? { structured: result.structuredContent as Record<string, unknown> } : {}) };
    } catch (err) {
      return { ok: false, text: `client error: ${(err as Error).message}` };
    }
  }

  async close(): Promise<void> {
    this.#closing = true;
    const client = this.#client ?? (await this.#connecting?.catch(() => undefined));
    await client?.close().catch(() => {});
    this.#log.end();
  }
}

/** One `opencode-connected --serve` kept running like a service manager would (Restart=on-failure). */
export class SupervisedLauncher {
  restarts = 0;
  readonly exits: Array<{ at: number; code: number | null; signal: NodeJS.Signals | null }> = [];
  #child: ChildProcess | undefined;
  #stopping = false;
  #restartTimer: NodeJS.Timeout | undefined;
  readonly #out: WriteStream;

  constructor(
    readonly name: string,
    readonly ns: string,
    readonly ws: LauncherWorkspace,
  ) {
    this.#out = createWriteStream(path.join(ws.root, "launcher.out"), { flags: "a" });
  }

  start(): void {
    const child = spawn("ip", ["netns", "exec", this.ns, process.execPath, LAUNCHER_MAIN, "--serve"], { cwd: this.ws.cwd, env: this.ws.env, stdio: ["ignore", "pipe", "pipe"] });
    this.#child = child;
    child.stdout!.pipe(this.#out, { end: false });
    child.stderr!.pipe(this.#out, { end: false });
    child.once("exit", (code, signal) => {
      this.exits.push({ at: Date.now(), code, signal });
      if (this.#stopping || (code === 0 && signal === null)) return;
      this.#restartTimer = setTimeout(() => {
        this.restarts++;
        this.start();
      }, RESTART_SEC_MS);
    });
  }

  get pid(): number | undefined {
    const c = this.#child;
    return c && c.exitCode === null && c.signalCode === null ? c.pid : undefined;
  }

  /** The launcher's children by command name ("ssh", "opencode"). */
  childPids(comm: string): number[] {
    const pid = this.pid;
    return pid === undefined ? [] : descendants(pid).filter((p) => commOf(p) === comm);
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#restartTimer);
    if (this.#child) await stopChild(this.#child, 10_000);
    this.#out.end();
  }
}

export interface Laptop {
  index: number;
  /** The instance name of its main launcher ("lap1"). */
  name: string;
  link: LaptopLink;
  modelPort: number;
  ledgerFile: string;
  launchers: SupervisedLauncher[];
  /** The main instance's launcher. */
  main: SupervisedLauncher;
}

export interface WorldOptions {
  laptops: number;
  /** Extra relay environment. */
  relayEnv?: Record<string, string>;
}

export class World {
  readonly laptops: Laptop[] = [];
  readonly #models: ChildProcess[] = [];

  private constructor(
    readonly net: Network,
    readonly root: string,
    readonly registry: string,
    readonly sshd: Sshd,
    readonly mcp: McpLink,
  ) {}

  static async create(opts: WorldOptions): Promise<World> {
    const net = Network.create(opts.laptops);
    const root = mkdtempSync(path.join(os.tmpdir(), "ocr-chaos-"));
    let sshd: Sshd | undefined;
    let world: World | undefined;
    try {
      const registry = path.join(root, "registry");
      sshd = await startSshd({ netns: net.relay, listenAddress: "0.0.0.0", port: 2222, clientAddresses: net.laptops.map((l) => l.relayIp) });
      const mcp = new McpLink(net.relay, { RELAY_REGISTRY_DIR: registry, LOG_LEVEL: "info", ...opts.relayEnv }, path.join(root, "opencode-mcp.log"));
      world = new World(net, root, registry, sshd, mcp);
      await mcp.connect();
      for (const link of net.laptops) await world.#addLaptop(link);
      return world;
    } catch (err) {
      // Stop supervisors and the relay client first, or they would keep restarting into a gone namespace.
      if (world) await world.close({ keep: true }).catch(() => {});
      await sshd?.close().catch(() => {});
      net.destroy();
      rmSync(root, { recursive: true, force: true });
      throw err;
    }
  }

  async #addLaptop(link: LaptopLink): Promise<void> {
    const dir = path.join(this.root, `lap${link.index}`);
    mkdirSync(dir, { recursive: true });
    const ledgerFile = path.join(dir, "model-ledger.jsonl");
    const model = spawn("ip", ["netns", "exec", link.ns, process.execPath, MODEL_MAIN, ledgerFile], { stdio: ["ignore", "pipe", "inherit"] });
    this.#models.push(model);
    const modelPort = await new Promise<number>((resolve, reject) => {
      const lines = createInterface({ input: model.stdout! });
      lines.on("line", (l) => {
        const m = /^listening (\d+)$/.exec(l);
        if (m) resolve(Number(m[1]));
      });
      model.once("exit", (code) => reject(new Error(`the model server in ${link.ns} exited with ${code}`)));
    });
    const laptop: Laptop = { index: link.index, name: `lap${link.index}`, link, modelPort, ledgerFile, launchers: [], main: undefined as unknown as SupervisedLauncher };
    laptop.main = this.addLauncher(laptop, laptop.name);
    this.laptops.push(laptop);
  }

  /** Starts one more supervised launcher on a laptop, as instance `name`. */
  addLauncher(laptop: Laptop, name: string): SupervisedLauncher {
    const ws = launcherWorkspace({
      base: path.join(this.root, `lap${laptop.index}`),
      name,
      modelUrl: `http://127.0.0.1:${laptop.modelPort}/v1`,
      sshCmd: this.sshd.sshCmdFor(laptop.link.relayIp),
      registry: this.registry,
    });
    const launcher = new SupervisedLauncher(name, laptop.link.ns, ws);
    launcher.start();
    laptop.launchers.push(launcher);
    return launcher;
  }

  /**
   * The relay's view of one instance: its `instances` entry, "missing" when not listed, or undefined
   * when the relay could not be asked (restarting, overloaded): no view at all is not a view of it.
   */
  async instance(name: string): Promise<{ status: string; problem?: string } | "missing" | undefined> {
    const r = await this.mcp.call("instances", {}, 10_000);
    if (!r.ok || !r.structured) return undefined;
    const list = (r.structured.instances ?? []) as Array<{ name: string; status: string; problem?: string }>;
    return list.find((i) => i.name === name) ?? "missing";
  }

  async waitOnline(names: string[], timeoutMs: number): Promise<void> {
    await waitFor(
      async () => {
        const r = await this.mcp.call("instances", {}, 10_000);
        const list = (r.structured?.instances ?? []) as Array<{ name: string; status: string }>;
        return names.every((n) => list.some((i) => i.name === n && i.status === "online"));
      },
      { timeoutMs, intervalMs: 200, what: `${names.join(", ")} to be listed online by the relay` },
    );
  }

  /** Stops everything and removes the namespaces; the run's directory (logs, ledgers) only unless `keep`. */
  async close(opts: { keep?: boolean } = {}): Promise<void> {
    for (const l of this.laptops) await Promise.all(l.launchers.map((x) => x.stop()));
    await this.mcp.close();
    for (const m of this.#models) await stopChild(m, 3_000);
    this.#models.length = 0;
    await this.sshd.close().catch(() => {});
    this.net.destroy();
    if (!opts.keep) rmSync(this.root, { recursive: true, force: true });
  }
}

export { tryKill };

/**
 * Real opencode for tests: the binary from the `opencode-ai` package, `opencode serve` on a loopback
 * port, pointed at a scripted model server, with its own project folder and XDG directories so no two
 * instances (or test runs) share state.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import getPort from "get-port";
import { PACKAGE_ROOT } from "../../src/shared/package-info.js";
import { waitFor } from "./wait.js";

export const OPENCODE_BIN = process.env.OPENCODE_BIN ?? path.join(PACKAGE_ROOT, "node_modules", ".bin", "opencode");

export interface OpencodeInstance {
  url: string;
  port: number;
  /** The project folder opencode runs in. */
  cwd: string;
  password?: string;
  process: ChildProcess;
  /** Everything opencode printed, for failure messages. */
  output(): string;
  stop(): Promise<void>;
}

export interface OpencodeOptions {
  modelUrl: string;
  password?: string;
  /** Extra opencode config merged at top level (e.g. permission rules). */
  config?: Record<string, unknown>;
  /** Folder name under the temp root; appears in `cwd`. */
  project?: string;
  readyTimeoutMs?: number;
}

export function opencodeConfig(modelUrl: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    $schema: "https://opencode.ai/config.json",
    provider: {
      fake: {
        npm: "@ai-sdk/openai-compatible",
        name: "Fake",
        options: { baseURL: modelUrl, apiKey: "x" },
        models: { "fake-model": { name: "Fake Model" } },
      },
    },
    model: "fake/fake-model",
    small_model: "fake/fake-model",
    share: "disabled",
    autoupdate: false,
    // Bash asks, so `/permission` turns produce a permission prompt.
    permission: { bash: "ask" },
    ...extra,
  };
}

/** Isolated environment for one opencode process: its own XDG dirs, nothing inherited that matters. */
export function opencodeEnv(root: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith("OPENCODE_")) delete env[k];
  return {
    ...env,
    XDG_CONFIG_HOME: path.join(root, "xdg-config"),
    XDG_DATA_HOME: path.join(root, "xdg-data"),
    XDG_STATE_HOME: path.join(root, "xdg-state"),
    XDG_CACHE_HOME: path.join(root, "xdg-cache"),
    OPENCODE_DISABLE_AUTOUPDATE: "1",
    // Keep opencode off the network as far as it allows: no models.dev fetch, and its install of
    // @opencode-ai/plugin into the config directory asks a closed loopback port instead of the npm
    // registry (opencode works without it). As root, `npm test` also runs everything in a network
    // namespace with only loopback (scripts/test.ts), which catches whatever else it tries.
    OPENCODE_DISABLE_MODELS_FETCH: "1",
    npm_config_registry: "http://127.0.0.1:9/",
    NPM_CONFIG_REGISTRY: "http://127.0.0.1:9/",
    ...extra,
  };
}

export async function startOpencode(opts: OpencodeOptions): Promise<OpencodeInstance> {
  if (!existsSync(OPENCODE_BIN)) throw new Error(`opencode binary not found at ${OPENCODE_BIN}: run npm install (the opencode-ai package provides it)`);
  const root = mkdtempSync(path.join(os.tmpdir(), "ocr-opencode-"));
  const cwd = path.join(root, opts.project ?? "project");
  mkdirSync(cwd, { recursive: true });
  writeFileSync(path.join(cwd, "opencode.json"), JSON.stringify(opencodeConfig(opts.modelUrl, opts.config), null, 2));
  const port = await getPort();
  let output = "";
  const child = spawn(OPENCODE_BIN, ["serve", "--port", String(port), "--hostname", "127.0.0.1"], {
    cwd,
    env: opencodeEnv(root, opts.password ? { OPENCODE_SERVER_PASSWORD: opts.password } : {}),
    stdio: ["ignore", "pipe", "pipe"],
    detached: true, // its own process group, so stop() takes any children with it
  });
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  const headers: Record<string, string> = opts.password ? { authorization: `Basic ${Buffer.from(`opencode:${opts.password}`).toString("base64")}` } : {};
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid!, "SIGTERM");
      } catch {
        /* already gone */
      }
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      const killed = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5_000).unref())]);
      if (!killed) {
        try {
          process.kill(-child.pid!, "SIGKILL");
        } catch {
          /* gone */
        }
        await exited;
      }
    }
    rmSync(root, { recursive: true, force: true });
  };
  try {
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`opencode exited with ${child.exitCode}:\n${output}`);
        try {
          // A probe made while the server is still starting can hang: bound each one.
          const res = await fetch(`${url}/global/health`, { headers, signal: AbortSignal.timeout(1_000) });
          return res.ok && (res.headers.get("content-type") ?? "").includes("json");
        } catch {
          return false;
        }
      },
      { timeoutMs: opts.readyTimeoutMs ?? 30_000, what: `opencode on port ${port} to become healthy` },
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, port, cwd, ...(opts.password ? { password: opts.password } : {}), process: child, output: () => output, stop };
}

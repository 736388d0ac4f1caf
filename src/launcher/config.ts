/**
 * The launcher's configuration: environment (the same variables as the launcher we replace) and argv,
 * parsed once. A bad value stops start-up with one line naming it.
 */
import os from "node:os";
import path from "node:path";
import { z } from "zod";
import { ConfigError, parseEnv } from "../shared/env.js";
import { LOG_LEVELS } from "../shared/logger.js";
import { nameProblem, sanitizeName } from "../shared/registration.js";
import { ShellSyntaxError, splitShellWords } from "./shell-words.js";

export const SUBCOMMANDS = ["run", "status", "cleanup", "sessions", "doctor", "relay-setup", "help"] as const;
/** Subcommands that parse their own options: every argument after the subcommand is passed to it as is. */
const OWN_OPTIONS: readonly Subcommand[] = ["relay-setup"];
export type Subcommand = (typeof SUBCOMMANDS)[number];

const LauncherEnvSchema = z.object({
  RELAY_SSH_CMD: z.string().optional(),
  RELAY_REGISTRY_DIR: z.string().default("/tmp/opencode-relay"),
  INSTANCE_NAME: z.string().optional(),
  RELAY_FORWARD: z.enum(["socket", "tcp"]).default("socket"),
  LOG_FILE: z.string().optional(),
  LOG_LEVEL: z.enum(LOG_LEVELS).default("info"),
  OPENCODE_BIN: z.string().default("opencode"),
  OPENCODE_SERVER_PASSWORD: z.string().optional(),
  OPENCODE_SERVER_USERNAME: z.string().default("opencode"),
  XDG_STATE_HOME: z.string().optional(),
  HOME: z.string().optional(),
});

export interface LauncherConfig {
  subcommand: Subcommand;
  /** Run `opencode serve` (no terminal needed) instead of the TUI. */
  serve: boolean;
  /** Arguments after `--`, passed to opencode. */
  opencodeArgs: string[];
  /** Arguments after a subcommand that parses its own options (relay-setup), unparsed. */
  subcommandArgs: string[];
  /** RELAY_SSH_CMD split into words; undefined = local mode. */
  sshCommand?: string[];
  sshCommandText?: string;
  registryDir: string;
  name: string;
  /** Whether the name was chosen by the user (INSTANCE_NAME) rather than derived. */
  nameGiven: boolean;
  forward: "socket" | "tcp";
  stateDir: string;
  logFile: string;
  logLevel: (typeof LOG_LEVELS)[number];
  opencodeBin: string;
  /** The user's own OPENCODE_SERVER_PASSWORD, kept when set. */
  password?: string;
  username: string;
  cwd: string;
  hostname: string;
}

export function stateDirFor(env: { XDG_STATE_HOME?: string; HOME?: string }): string {
  return path.join(env.XDG_STATE_HOME || path.join(env.HOME || os.homedir(), ".local", "state"), "opencode-relay");
}

export function loadLauncherConfig(argv: string[], env: NodeJS.ProcessEnv, cwd = process.cwd(), hostname = os.hostname()): LauncherConfig {
  const e = parseEnv(LauncherEnvSchema, env);
  const dashdash = argv.indexOf("--");
  const own = dashdash < 0 ? argv : argv.slice(0, dashdash);
  const opencodeArgs = dashdash < 0 ? [] : argv.slice(dashdash + 1);
  let subcommand: Subcommand = "run";
  let serve = false;
  const subcommandArgs: string[] = [];
  for (const a of own) {
    if (OWN_OPTIONS.includes(subcommand)) subcommandArgs.push(a);
    else if (a === "--help" || a === "-h") subcommand = "help";
    else if (a === "--serve") serve = true;
    else if ((SUBCOMMANDS as readonly string[]).includes(a) && subcommand === "run") subcommand = a as Subcommand;
    else throw new ConfigError(`unknown argument "${a}"; arguments for opencode go after --, see opencode-connected --help`);
  }
  let sshCommand: string[] | undefined;
  if (e.RELAY_SSH_CMD?.trim()) {
    try {
      sshCommand = splitShellWords(e.RELAY_SSH_CMD);
    } catch (err) {
      throw new ConfigError(`RELAY_SSH_CMD: ${(err as ShellSyntaxError).message}`);
    }
  }
  if (!e.RELAY_REGISTRY_DIR.startsWith("/")) throw new ConfigError(`RELAY_REGISTRY_DIR="${e.RELAY_REGISTRY_DIR}": must be an absolute path`);
  if (e.INSTANCE_NAME !== undefined) {
    const problem = nameProblem(e.INSTANCE_NAME);
    if (problem) throw new ConfigError(`INSTANCE_NAME="${e.INSTANCE_NAME}": ${problem}; for example ${sanitizeName(e.INSTANCE_NAME)}`);
  }
  const stateDir = stateDirFor(e);
  return {
    subcommand,
    serve,
    opencodeArgs,
    subcommandArgs,
    ...(sshCommand ? { sshCommand, sshCommandText: e.RELAY_SSH_CMD! } : {}),
    registryDir: e.RELAY_REGISTRY_DIR,
    name: e.INSTANCE_NAME ?? sanitizeName(`${hostname.split(".")[0]}-${path.basename(cwd)}`),
    nameGiven: e.INSTANCE_NAME !== undefined,
    forward: e.RELAY_FORWARD,
    stateDir,
    logFile: e.LOG_FILE ?? path.join(stateDir, "opencode-connected.log"),
    logLevel: e.LOG_LEVEL,
    opencodeBin: e.OPENCODE_BIN,
    ...(e.OPENCODE_SERVER_PASSWORD ? { password: e.OPENCODE_SERVER_PASSWORD } : {}),
    username: e.OPENCODE_SERVER_USERNAME,
    cwd,
    hostname,
  };
}

/** Next candidate after a name is taken: name-2, name-3, … (kept within the length limit). */
export function nextName(base: string, n: number): string {
  const suffix = `-${n}`;
  return `${base.slice(0, 128 - suffix.length)}${suffix}`;
}

/**
 * The `static` transport: instances listed by hand in a JSON file of direct URLs, for users whose
 * machines reach each other without a relay (a LAN, a mesh VPN). The file is watched and re-read on
 * change; a file that stops parsing keeps the last good list and says why on stderr.
 *
 *   { "instances": [ { "name": "desk", "url": "http://10.0.0.5:4096", "passwordEnv": "DESK_PW" } ] }
 *
 * Instances from here are never pruned: the user wrote them down, only the user removes them.
 */
import { promises as fs } from "node:fs";
import { watch, type FSWatcher } from "chokidar";
import { z } from "zod";
import { silentLogger, type Logger } from "../../shared/logger.js";
import { describeZodError, nameProblem } from "../../shared/registration.js";
import { Listeners, type InstanceEndpoint, type Transport, type TransportEvent } from "./transport.js";

export const STATIC = "static";

const StaticInstanceSchema = z
  .object({
    name: z.string().superRefine((n, ctx) => {
      const problem = nameProblem(n);
      if (problem) ctx.addIssue({ code: z.ZodIssueCode.custom, message: problem });
    }),
    url: z
      .string()
      .url()
      .refine((u) => /^https?:$/.test(new URL(u).protocol), "url must be http:// or https://"),
    username: z.string().min(1).default("opencode"),
    /** The password itself; prefer passwordEnv to keep secrets out of the file. */
    password: z.string().min(1).optional(),
    /** Name of an environment variable that holds the password. */
    passwordEnv: z.string().min(1).optional(),
    hostname: z.string().optional(),
    cwd: z.string().optional(),
  })
  .strict();

const StaticFileSchema = z.union([z.array(StaticInstanceSchema), z.object({ instances: z.array(StaticInstanceSchema) }).strict()]);

export interface StaticOptions {
  file: string;
  env?: NodeJS.ProcessEnv;
  logger?: Logger;
}

export class StaticTransport implements Transport {
  readonly name = STATIC;
  readonly #opts: StaticOptions;
  readonly #log: Logger;
  readonly #listeners = new Listeners<TransportEvent>();
  #endpoints = new Map<string, InstanceEndpoint>();
  #watcher: FSWatcher | undefined;

  constructor(opts: StaticOptions) {
    this.#opts = opts;
    this.#log = (opts.logger ?? silentLogger).child({ transport: STATIC });
  }

  /** Parses the file's text into endpoints; throws a one-sentence error naming what is wrong. */
  parse(text: string): InstanceEndpoint[] {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new Error(`${this.#opts.file} is not valid JSON: ${(err as Error).message}`, { cause: err });
    }
    const parsed = StaticFileSchema.safeParse(json);
    if (!parsed.success) throw new Error(`${this.#opts.file}: ${describeZodError(parsed.error)}`);
    const list = Array.isArray(parsed.data) ? parsed.data : parsed.data.instances;
    const env = this.#opts.env ?? process.env;
    const seen = new Set<string>();
    return list.map((item) => {
      if (seen.has(item.name)) throw new Error(`${this.#opts.file}: the name "${item.name}" appears twice`);
      seen.add(item.name);
      let password = item.password;
      if (item.passwordEnv) {
        password = env[item.passwordEnv];
        if (!password) throw new Error(`${this.#opts.file}: instance "${item.name}" takes its password from ${item.passwordEnv}, which is not set`);
      }
      const url = new URL(item.url);
      const endpoint: InstanceEndpoint = {
        key: `${STATIC}:${item.name}`,
        name: item.name,
        transport: STATIC,
        hostname: item.hostname ?? url.hostname,
        baseUrl: url.toString().replace(/\/$/, ""),
      };
      if (item.cwd) endpoint.cwd = item.cwd;
      if (password) endpoint.auth = { username: item.username, password };
      return endpoint;
    });
  }

  async #reload(initial: boolean): Promise<void> {
    let text: string;
    try {
      text = await fs.readFile(this.#opts.file, "utf8");
    } catch (err) {
      const message = `cannot read STATIC_INSTANCES_FILE ${this.#opts.file}: ${(err as NodeJS.ErrnoException).code ?? err}`;
      if (initial) throw new Error(message, { cause: err });
      this.#log.warn(`${message}; keeping the previous list`);
      return;
    }
    let next: InstanceEndpoint[];
    try {
      next = this.parse(text);
    } catch (err) {
      if (initial) throw err;
      this.#log.warn(`${(err as Error).message}; keeping the previous list`);
      return;
    }
    const nextMap = new Map(next.map((e) => [e.key, e]));
    for (const key of this.#endpoints.keys()) {
      if (!nextMap.has(key)) this.#listeners.emit({ type: "remove", key });
    }
    const previous = this.#endpoints;
    this.#endpoints = nextMap;
    for (const e of next) {
      if (JSON.stringify(previous.get(e.key)) !== JSON.stringify(e)) this.#listeners.emit({ type: "upsert", endpoint: e });
    }
    this.#log.info("static instances loaded", { count: next.length });
  }

  async start(): Promise<void> {
    await this.#reload(true);
    const watcher = watch(this.#opts.file, { ignoreInitial: true });
    watcher.on("change", () => void this.#reload(false)).on("add", () => void this.#reload(false));
    watcher.on("error", (err) => this.#log.warn("static file watcher error", { err }));
    await new Promise<void>((resolve) => watcher.once("ready", () => resolve()));
    this.#watcher = watcher;
  }

  async close(): Promise<void> {
    await this.#watcher?.close();
  }

  list(): InstanceEndpoint[] {
    return [...this.#endpoints.values()];
  }

  subscribe(listener: (event: TransportEvent) => void): () => void {
    return this.#listeners.add(listener);
  }
}

/**
 * The registration file: one JSON file per instance in the registry directory, `{name}.json`.
 * The first six fields are the format the tool we replace writes; a file in that exact form must keep
 * working. Everything after them is optional and added by this project.
 */
import { z } from "zod";

/** Longest instance name we accept; it is also a file name, so stay well below NAME_MAX (255). */
export const MAX_NAME_LENGTH = 128;

/**
 * Why `name` is not a valid instance name, or undefined when it is. Names become file names in the
 * registry, so anything that could escape the directory or hide the file is refused.
 */
export function nameProblem(name: string): string | undefined {
  if (name.length === 0) return "the name is empty";
  if (name.length > MAX_NAME_LENGTH) return `the name is longer than ${MAX_NAME_LENGTH} characters`;
  if (/[/\\]/.test(name)) return "the name contains a path separator";
  if (/[\x00-\x1f\x7f]/.test(name)) return "the name contains a control character";
  if (name.startsWith(".")) return "the name starts with a dot";
  return undefined;
}

/** Turns any string (a hostname, a folder name) into a valid instance name. */
export function sanitizeName(raw: string): string {
  const cleaned = raw
    .normalize("NFKC")
    .replace(/[^A-Za-z0-9._-]+/g, "-")
    .replace(/^[.-]+/, "")
    .replace(/-+$/, "")
    .slice(0, MAX_NAME_LENGTH);
  return cleaned || "opencode";
}

const instanceName = z.string().superRefine((name, ctx) => {
  const problem = nameProblem(name);
  if (problem) ctx.addIssue({ code: z.ZodIssueCode.custom, message: problem });
});

const port = z.number().int().min(1).max(65535);

export const RegistrationSchema = z
  .object({
    name: instanceName,
    hostname: z.string().max(255),
    /** Tunnel port on the relay (TCP forward). Absent when `socket` is used. */
    port: port.optional(),
    /** Port opencode listens on at the laptop; informational on the relay. */
    localPort: port.optional(),
    cwd: z.string().max(4096),
    connectedAt: z.string().max(64),
    /** Unix socket on the relay that forwards to the instance (preferred over `port`). */
    socket: z.string().startsWith("/", "socket must be an absolute path").max(107, "socket path is too long for a Unix socket").optional(),
    /** HTTP Basic credentials of the instance (OPENCODE_SERVER_PASSWORD on the laptop). */
    auth: z.object({ username: z.string().min(1).max(256).default("opencode"), password: z.string().min(1).max(1024) }).optional(),
    /** Unique id of this launcher run; tells two instances with the same name apart. */
    id: z.string().max(128).optional(),
    /** Per-connection nonce; a cleanup removes the file only if it still carries its own nonce. */
    nonce: z.string().max(128).optional(),
    pid: z.number().int().positive().optional(),
    version: z.string().max(64).optional(),
    /** ISO time of the launcher's last heartbeat line. */
    heartbeatAt: z.string().max(64).optional(),
  })
  .refine((r) => r.port !== undefined || r.socket !== undefined, {
    message: "the registration needs a port or a socket",
    path: ["port"],
  });

export type Registration = z.infer<typeof RegistrationSchema>;

/** One readable sentence from a zod error: "port: Expected number, received string; …". */
export function describeZodError(err: z.ZodError): string {
  return err.issues.map((i) => (i.path.length ? `${i.path.join(".")}: ${i.message}` : i.message)).join("; ");
}

/**
 * A tunnel's Unix socket in the registry: `<first 40 characters of the name>-<16 hex nonce>.sock` (the
 * launcher makes it, the relay's sweep and a hardened relay's forced command recognise it).
 */
export function tunnelSocketFile(name: string, nonce: string): string {
  return `${name.slice(0, 40)}-${nonce}.sock`;
}
export const TUNNEL_SOCKET_FILE = /^[^/]{1,40}-[0-9a-f]{16}\.sock$/;

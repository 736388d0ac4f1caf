/**
 * What every HTTP request passes before anything else looks at it: the bind-address rule, the Host and
 * Origin checks (DNS rebinding: a web page the user visits must not reach a loopback server through a
 * name it controls), and a bounded body read.
 */
import type { IncomingMessage } from "node:http";
import net from "node:net";

/** 127.0.0.0/8, ::1 (and its IPv4-mapped forms), or `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  if (h === "localhost") return true;
  if (net.isIPv4(h)) return h.startsWith("127.");
  if (net.isIPv6(h)) {
    const loopback = new net.BlockList();
    loopback.addAddress("::1", "ipv6");
    loopback.addSubnet("::ffff:127.0.0.0", 104, "ipv6");
    return loopback.check(h, "ipv6");
  }
  return false;
}

/** Host header check; `allowed` undefined accepts any Host. */
export function hostAllowed(host: string | undefined, allowed: readonly string[] | undefined): boolean {
  if (allowed === undefined) return true;
  return host !== undefined && allowed.includes(host.trim().toLowerCase());
}

/** No Origin header (not a browser) is fine; a browser's Origin must be listed. */
export function originAllowed(origin: string | undefined, allowed: readonly string[]): boolean {
  if (origin === undefined) return true;
  return allowed.includes(origin.trim().toLowerCase());
}

export type BodyRead = { ok: true; body: Buffer } | { ok: false; reason: "too-large" | "aborted" };

/**
 * Reads a request body of at most `maxBytes`: a larger declared Content-Length is refused before a
 * byte is read, a larger stream as soon as it crosses the bound.
 */
export function readBody(req: IncomingMessage, maxBytes: number): Promise<BodyRead> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > maxBytes) return Promise.resolve({ ok: false, reason: "too-large" });
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (r: BodyRead) => {
      if (done) return;
      done = true;
      req.off("data", onData);
      resolve(r);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        finish({ ok: false, reason: "too-large" });
        return;
      }
      chunks.push(chunk);
    };
    req.on("data", onData);
    req.once("end", () => finish({ ok: true, body: Buffer.concat(chunks, size) }));
    req.once("error", () => finish({ ok: false, reason: "aborted" }));
    req.once("close", () => finish({ ok: false, reason: "aborted" }));
  });
}

/**
 * Counting what a fault may leave behind: processes in the run's namespaces, and the relay's file
 * descriptors, split into connections pooled to live instances (keep-alive: bounded, not leaks),
 * connections to tunnel sockets that no registration uses any more (leaks), and everything else.
 */
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import path from "node:path";
import { pidsIn } from "./netns.js";
import type { World } from "./world.js";

export function processCount(world: World): number {
  return world.net.namespaces.reduce((n, ns) => n + pidsIn(ns).length, 0);
}

export interface RelayFds {
  total: number;
  /** Connections to the socket of a current registration (the keep-alive pool, requests in flight). */
  pooled: number;
  /** Connections to a tunnel socket no registration names any more. */
  stale: number;
  /** Pipes, the inotify handle, the event loop, stdio… */
  other: number;
}

/** Socket paths the registry's files name now. */
function currentSockets(registry: string): Set<string> {
  const out = new Set<string>();
  let files: string[] = [];
  try {
    files = readdirSync(registry).filter((f) => f.endsWith(".json"));
  } catch {
    return out;
  }
  for (const f of files) {
    try {
      const socket = (JSON.parse(readFileSync(path.join(registry, f), "utf8")) as { socket?: unknown }).socket;
      if (typeof socket === "string") out.add(socket);
    } catch {
      /* not a registration */
    }
  }
  return out;
}

export function relayFds(world: World): RelayFds | undefined {
  const pid = world.mcp.pid;
  if (pid === undefined) return undefined;
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return undefined;
  }
  const socketInodes: string[] = [];
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) socketInodes.push(m[1]!);
    } catch {
      /* closed meanwhile */
    }
  }
  // Unix sockets in the relay's namespace: "u_str ESTAB 0 0 <local> <inode> <peer> <peer inode> …".
  const ss = spawnSync("ip", ["netns", "exec", world.net.relay, "ss", "-xanH"], { encoding: "utf8" }).stdout ?? "";
  const local = new Map<string, { addr: string; peer: string }>();
  for (const line of ss.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 8) local.set(f[5]!, { addr: f[4]!, peer: f[7]! });
  }
  const live = currentSockets(world.registry);
  let pooled = 0;
  let stale = 0;
  for (const inode of socketInodes) {
    const peerInode = local.get(inode)?.peer;
    const peerAddr = peerInode ? local.get(peerInode)?.addr : undefined;
    if (!peerAddr || !peerAddr.startsWith(`${world.registry}/`)) continue;
    if (live.has(peerAddr)) pooled++;
    else stale++;
  }
  return { total: fds.length, pooled, stale, other: fds.length - pooled - stale };
}

/** What the registry should hold: each instance's registration and (socket forward) its socket. */
export function staleRegistryFiles(world: World): string[] {
  let entries: string[];
  try {
    entries = readdirSync(world.registry);
  } catch {
    return [];
  }
  const names = new Set(world.laptops.flatMap((l) => l.launchers.map((x) => x.name)));
  const withSocket = new Set<string>();
  const stale: string[] = [];
  for (const e of entries) {
    if (e.endsWith(".json") && names.has(e.slice(0, -5))) continue;
    const sock = /^(.+)-[0-9a-f]{16}\.sock$/.exec(e)?.[1];
    if (sock !== undefined && names.has(sock) && !withSocket.has(sock)) {
      withSocket.add(sock);
      continue;
    }
    stale.push(e);
  }
  return stale;
}

/**
 * A count once it has stopped moving (two equal readings 500 ms apart), or once it is back at `target`;
 * after `timeoutMs`, whatever it is then.
 */
export async function settledCount(read: () => number, target?: number, timeoutMs = 10_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = read();
  for (;;) {
    if (target !== undefined && last <= target) return last;
    await new Promise((r) => setTimeout(r, 500));
    const now = read();
    if (target === undefined && now === last) return now;
    last = now;
    if (Date.now() >= deadline) return now;
  }
}

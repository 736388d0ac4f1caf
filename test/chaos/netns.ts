/**
 * Machines on one host: a network namespace for the relay and one per laptop, each laptop joined to the
 * relay by its own veth pair (relay 10.201.N.1/24, laptop 10.201.N.2/24), with nothing else: no route
 * out, so nothing started in them (opencode included) can reach any address but each other and their
 * own loopback.
 *
 * Every namespace is named after this process (`ocr<pid>…`), deleted on every exit path (normal exit,
 * SIGINT/SIGTERM, uncaught error) and, should a run have been SIGKILLed, swept by the next run. Deleting a
 * namespace deletes its veth ends; processes still inside are killed first.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";

export class NetnsUnavailableError extends Error {}

export interface LaptopLink {
  index: number;
  ns: string;
  /** The laptop's end of its link to the relay. */
  dev: string;
  relayDev: string;
  laptopIp: string;
  relayIp: string;
}

const PREFIX = "ocr";

function ip(args: string[]): string {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.error) throw new NetnsUnavailableError(`cannot run ip (${r.error.message}): install iproute2`);
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** PIDs of the processes inside a namespace. */
export function pidsIn(ns: string): number[] {
  const r = spawnSync("ip", ["netns", "pids", ns], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.split(/\s+/).filter(Boolean).map(Number) : [];
}

/** The command name of a pid ("" once gone). */
export function commOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return "";
  }
}

function deleteNamespace(ns: string): void {
  for (const pid of pidsIn(ns)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }
  spawnSync("ip", ["netns", "del", ns]);
}

/** Namespaces left by runs that were killed outright (their pid is gone). */
function sweepStale(): string[] {
  const swept: string[] = [];
  const r = spawnSync("ip", ["netns", "list"], { encoding: "utf8" });
  for (const line of (r.stdout ?? "").split("\n")) {
    const m = new RegExp(`^(${PREFIX}(\\d+)[a-z]\\w*)`).exec(line.trim());
    if (m && !alive(Number(m[2]))) {
      deleteNamespace(m[1]!);
      swept.push(m[1]!);
    }
  }
  return swept;
}

export class Network {
  readonly relay: string;
  readonly laptops: LaptopLink[] = [];
  readonly #all: string[] = [];
  readonly #degraded = new Map<number, string>();
  #destroyed = false;
  readonly #onExit = () => this.destroy();
  readonly #onSignal = (signal: NodeJS.Signals) => {
    this.destroy();
    process.exit(signal === "SIGINT" ? 130 : 143);
  };

  private constructor() {
    this.relay = `${PREFIX}${process.pid}relay`;
  }

  /** Creates the relay namespace and `laptops` laptop namespaces, each linked to the relay. */
  static create(laptops: number): Network {
    if (process.platform !== "linux") throw new NetnsUnavailableError(`network namespaces need Linux (this is ${process.platform})`);
    if (spawnSync("ip", ["-V"]).error) throw new NetnsUnavailableError("the ip command (iproute2) is not installed: apt-get install iproute2");
    sweepStale();
    const net = new Network();
    process.on("exit", net.#onExit);
    process.on("SIGINT", net.#onSignal).on("SIGTERM", net.#onSignal);
    try {
      net.#add(net.relay);
      for (let i = 1; i <= laptops; i++) net.addLaptop(i);
    } catch (err) {
      net.destroy();
      throw err;
    }
    return net;
  }

  #add(ns: string): void {
    const r = spawnSync("ip", ["netns", "add", ns], { encoding: "utf8" });
    if (r.status !== 0) {
      const why = (r.stderr || r.stdout || r.error?.message || "").trim();
      throw new NetnsUnavailableError(
        `cannot create a network namespace (ip netns add: ${why}). The chaos suite needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2: run it as root, e.g. sudo npm run test:chaos`,
      );
    }
    this.#all.push(ns);
    ip(["-n", ns, "link", "set", "lo", "up"]);
  }

  addLaptop(index: number): LaptopLink {
    const ns = `${PREFIX}${process.pid}lap${index}`;
    this.#add(ns);
    // Interface names are at most 15 characters; they only need to be unique while in the root namespace.
    const dev = `ol${process.pid % 100000}x${index}`;
    const relayDev = `or${process.pid % 100000}x${index}`;
    ip(["link", "add", relayDev, "type", "veth", "peer", "name", dev]);
    try {
      ip(["link", "set", relayDev, "netns", this.relay]);
      ip(["link", "set", dev, "netns", ns]);
    } catch (err) {
      // Still in our own namespace (perhaps the host's): deleting the namespaces would not remove it.
      spawnSync("ip", ["link", "del", relayDev]);
      spawnSync("ip", ["link", "del", dev]);
      throw err;
    }
    const link: LaptopLink = { index, ns, dev, relayDev, laptopIp: `10.201.${index}.2`, relayIp: `10.201.${index}.1` };
    ip(["-n", this.relay, "addr", "add", `${link.relayIp}/24`, "dev", relayDev]);
    ip(["-n", this.relay, "link", "set", relayDev, "up"]);
    ip(["-n", ns, "addr", "add", `${link.laptopIp}/24`, "dev", dev]);
    ip(["-n", ns, "link", "set", dev, "up"]);
    this.laptops.push(link);
    return link;
  }

  laptop(index: number): LaptopLink {
    const l = this.laptops.find((x) => x.index === index);
    if (!l) throw new Error(`no laptop ${index}`);
    return l;
  }

  /** The laptop's link goes down (Wi-Fi lost): packets are dropped silently, connections go half-open. */
  linkDown(index: number): void {
    const l = this.laptop(index);
    ip(["-n", l.ns, "link", "set", l.dev, "down"]);
  }

  linkUp(index: number): void {
    const l = this.laptop(index);
    ip(["-n", l.ns, "link", "set", l.dev, "up"]);
  }

  /**
   * A bad link for the laptop: `loss`% of packets dropped both ways and added latency. With tc netem
   * (sch_netem) when the kernel has it: `delay DELAYms JITTERms loss LOSS%`. Some kernels (this
   * workplace's Firecracker VMs) are built without netem; then the loss is real packet loss from
   * netfilter's statistic match (iptables) and the latency comes from a slow link (tbf at 96 kbit/s on
   * both ends, so every packet waits its serialization time behind the others). Returns what was applied.
   */
  degrade(index: number, opts: { lossPct: number; delayMs: number; jitterMs: number }): string {
    const l = this.laptop(index);
    const netem = spawnSync("ip", ["netns", "exec", l.ns, "tc", "qdisc", "replace", "dev", l.dev, "root", "netem", "delay", `${opts.delayMs}ms`, `${opts.jitterMs}ms`, "loss", `${opts.lossPct}%`], { encoding: "utf8" });
    if (netem.status === 0) return `tc netem: delay ${opts.delayMs}±${opts.jitterMs} ms, loss ${opts.lossPct}%`;
    const iptables = ["iptables-legacy", "iptables"].find((c) => spawnSync(c, ["--version"]).status === 0);
    if (!iptables) throw new Error(`tc netem is unavailable (${netem.stderr.trim()}) and so is iptables for the fallback: apt-get install iptables`);
    const p = String(opts.lossPct / 100);
    for (const [chain, dir] of [["INPUT", "-i"], ["OUTPUT", "-o"]] as const) {
      execFileSync("ip", ["netns", "exec", l.ns, iptables, "-A", chain, dir, l.dev, "-m", "statistic", "--mode", "random", "--probability", p, "-j", "DROP"]);
    }
    for (const [ns, dev] of [[l.ns, l.dev], [this.relay, l.relayDev]] as const) {
      execFileSync("ip", ["netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", "96kbit", "burst", "1600", "latency", "2s"]);
    }
    this.#degraded.set(index, iptables);
    return `no tc netem in this kernel: ${opts.lossPct}% packet loss both ways (${iptables} statistic match) on a 96 kbit/s link (tbf)`;
  }

  restore(index: number): void {
    const l = this.laptop(index);
    spawnSync("ip", ["netns", "exec", l.ns, "tc", "qdisc", "del", "dev", l.dev, "root"]);
    spawnSync("ip", ["netns", "exec", this.relay, "tc", "qdisc", "del", "dev", l.relayDev, "root"]);
    const iptables = this.#degraded.get(index);
    if (iptables) spawnSync("ip", ["netns", "exec", l.ns, iptables, "-F"]);
    this.#degraded.delete(index);
  }

  /** Kills what still runs inside and deletes every namespace (and with them the veth pairs). Idempotent. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const ns of [...this.#all].reverse()) deleteNamespace(ns);
    process.off("exit", this.#onExit);
    process.off("SIGINT", this.#onSignal).off("SIGTERM", this.#onSignal);
  }

  get namespaces(): readonly string[] {
    return this.#all;
  }
}

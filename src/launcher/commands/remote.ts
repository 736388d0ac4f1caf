/** One short command on the relay through RELAY_SSH_CMD, with a timeout: for status, cleanup, doctor. */
import { spawn } from "node:child_process";
import { shellQuote } from "../shell-words.js";

export interface RemoteResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runOnRelay(sshCommand: string[], script: string, args: string[], timeoutMs = 20_000): Promise<RemoteResult> {
  const [cmd, ...pre] = sshCommand;
  const remote = ["sh", "-c", script, "opencode-relay", ...args].map(shellQuote).join(" ");
  return new Promise((resolve) => {
    const child = spawn(cmd!, [...pre, "-T", "-o", "ConnectTimeout=10", remote], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      stderr += `\n(timed out after ${timeoutMs} ms)`;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      resolve({ code: 127, stdout, stderr: `${stderr}${err.message}` });
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

import assert from "node:assert/strict";
import { test } from "node:test";
import { loadLauncherConfig, nextName } from "../../src/launcher/config.js";

const load = (argv: string[], env: NodeJS.ProcessEnv = {}) => loadLauncherConfig(argv, { HOME: "/home/me", ...env }, "/home/me/src/My Project", "laptop.local");

test("the old launcher's defaults", () => {
  const c = load([]);
  assert.equal(c.subcommand, "run");
  assert.equal(c.name, "laptop-My-Project", "hostname-basename, sanitised");
  assert.equal(c.registryDir, "/tmp/opencode-relay");
  assert.equal(c.sshCommand, undefined, "no RELAY_SSH_CMD: local mode");
  assert.equal(c.forward, "socket");
  assert.equal(c.logFile, "/home/me/.local/state/opencode-relay/opencode-connected.log");
});

test("arguments after -- go to opencode; subcommands; --serve", () => {
  assert.deepEqual(load(["--", "--model", "x/y", "status"]).opencodeArgs, ["--model", "x/y", "status"]);
  assert.equal(load(["status"]).subcommand, "status");
  assert.equal(load(["--serve"]).serve, true);
  assert.equal(load(["--help"]).subcommand, "help");
  assert.throws(() => load(["--modle"]), /unknown argument "--modle"; arguments for opencode go after --/);
});

test("RELAY_SSH_CMD is split like a shell; bad values are named", () => {
  assert.deepEqual(load([], { RELAY_SSH_CMD: `ssh -i "/k y" u@r` }).sshCommand, ["ssh", "-i", "/k y", "u@r"]);
  assert.throws(() => load([], { RELAY_SSH_CMD: `ssh "u@r` }), /RELAY_SSH_CMD: unterminated/);
  assert.throws(() => load([], { INSTANCE_NAME: "a/b" }), /INSTANCE_NAME="a\/b": the name contains a path separator; for example a-b/);
  assert.throws(() => load([], { RELAY_FORWARD: "udp" }), /RELAY_FORWARD="udp"/);
  assert.throws(() => load([], { RELAY_REGISTRY_DIR: "tmp/x" }), /must be an absolute path/);
});

test("the user's own password is kept", () => {
  assert.equal(load([], { OPENCODE_SERVER_PASSWORD: "mine" }).password, "mine");
});

test("next names", () => {
  assert.equal(nextName("desk", 2), "desk-2");
  assert.equal(nextName("x".repeat(128), 2).length, 128);
});

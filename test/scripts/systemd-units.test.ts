/** The shipped systemd units pass `systemd-analyze verify`, and a broken copy does not (so the check bites). */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { PACKAGE_ROOT } from "../../src/shared/package-info.js";
import { tempDir } from "../support/temp.js";

const UNITS = path.join(PACKAGE_ROOT, "scripts", "systemd");

function verify(unit: string, user: boolean, runtimeDir: string) {
  const args = [...(user ? ["--user"] : []), "verify", unit];
  // A user manager needs a runtime directory; CI has no login session to provide one.
  return spawnSync("systemd-analyze", args, { encoding: "utf8", env: { ...process.env, XDG_RUNTIME_DIR: runtimeDir }, timeout: 60_000 });
}

test("systemd units verify: the launcher's user unit and the relay's HTTP server unit", () => {
  const tmp = tempDir("ocr-systemd-");
  try {
    const runtime = path.join(tmp.path, "runtime");
    mkdirSync(runtime, { mode: 0o700 });
    const user = verify(path.join(UNITS, "opencode-connected.service"), true, runtime);
    assert.equal(user.status, 0, `${user.stdout}${user.stderr}`);
    assert.equal(user.stderr.trim(), "", "no warnings");
    const system = verify(path.join(UNITS, "opencode-mcp-http.service"), false, runtime);
    assert.equal(system.status, 0, `${system.stdout}${system.stderr}`);
    assert.equal(system.stderr.trim(), "", "no warnings");

    const broken = path.join(tmp.path, "broken.service");
    writeFileSync(broken, readFileSync(path.join(UNITS, "opencode-mcp-http.service"), "utf8").replace("ExecStart=", "ExecStrat="));
    const bad = verify(broken, false, runtime);
    assert.notEqual(bad.status, 0, "a unit without ExecStart fails verification");
  } finally {
    tmp.remove();
  }
});

test("the units run what this package ships", () => {
  assert.match(readFileSync(path.join(UNITS, "opencode-connected.service"), "utf8"), /exec opencode-connected --serve/);
  assert.match(readFileSync(path.join(UNITS, "opencode-mcp-http.service"), "utf8"), /dist\/src\/relay\/main\.js --http/);
});

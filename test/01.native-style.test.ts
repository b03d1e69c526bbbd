/**
 * The native code is one house: every C/C++ file under the style in
 * .clang-format (scripts/native-files.sh lists them). `npm run format:native`
 * fixes what this reports.
 */
import { strict as assert } from "node:assert";
import { execFileSync, spawnSync } from "node:child_process";
import path from "node:path";

const repoRoot = path.resolve(__dirname, "..", "..");

describe("01 native style", () => {
  it("every native source is formatted as .clang-format says", function () {
    this.timeout(120000);
    const probe = spawnSync("clang-format", ["--version"], { encoding: "utf8" });
    if (probe.error || probe.status !== 0) {
      console.log("      skipped: clang-format is not installed (bash scripts/setup.sh installs it)");
      this.skip();
    }
    const files = execFileSync("bash", [path.join(repoRoot, "scripts", "native-files.sh")], { encoding: "utf8" })
      .split("\n")
      .filter((f) => f !== "");
    assert.ok(files.length > 50, `expected the native sources, got ${files.length} files`);
    const run = spawnSync("clang-format", ["--dry-run", "--Werror", ...files], { cwd: repoRoot, encoding: "utf8" });
    const offenders = [...new Set([...run.stderr.matchAll(/^([^:\n]+):\d+:\d+: error/gm)].map((m) => m[1]))];
    assert.equal(run.status, 0, `not formatted (npm run format:native): ${offenders.join(", ")}`);
  });
});

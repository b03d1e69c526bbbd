/**
 * The mocha hooks the uprobe test files share: compile the fixture once
 * (skipping the suite, with the reason printed, where clang is missing), then
 * for every test a fresh runtime with the frida-uprobe plugin and the object
 * loaded, closed after the test. Call inside a describe(); `bind` receives
 * the current values before each test (and the compiled path and the test
 * addon once, before the first). `options` go to every Runtime.create.
 * The fixture's build folder goes after the suite.
 */
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { compileBpfC, Runtime, type LoadedObject, type RuntimeOptions } from "@bpfhook/core";
import { clangUnavailable } from "./clang.js";
import { removeTempDir } from "./tmp.js";
import { testAddon, type TestAddon } from "./test-addon.js";

const repoRoot = path.resolve(__dirname, "..", "..", "..");

export interface UprobeSession {
  objectPath: string;
  t: TestAddon;
  rt: Runtime;
  obj: LoadedObject;
}

export function useUprobeFixture(
  fixture: string,
  tmpPrefix: string,
  bind: (s: Partial<UprobeSession>) => void,
  options: Omit<RuntimeOptions, "plugins" | "resolveFrom"> = {},
): void {
  const s: Partial<UprobeSession> = {};
  let dir: string | undefined;
  before(function () {
    const reason = clangUnavailable();
    if (reason) {
      console.log(`      skipped: ${reason}`);
      this.skip();
    }
    dir = mkdtempSync(path.join(os.tmpdir(), tmpPrefix));
    const out = path.join(dir, path.basename(fixture, ".c") + ".o");
    s.objectPath = compileBpfC(fixture, { out });
    s.t = testAddon();
    bind(s);
  });
  beforeEach(async () => {
    s.rt = await Runtime.create({ ...options, plugins: ["@bpfhook/plugin-frida-uprobe"], resolveFrom: repoRoot });
    s.obj = s.rt.load(s.objectPath!);
    bind(s);
  });
  afterEach(() => s.rt?.close());
  after(() => removeTempDir(dir));
}

/**
 * Agent mode through the embedding API (AgentSession): the controller
 * detaches, re-attaches and attaches again at run time without restarting
 * the program; a thread started after the attach runs the probes; a third
 * party's plugin given as a directory reaches the agent, whose refusal comes
 * back as the attach's error.
 */
import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { AgentSession, type BpfMap, type Link } from "@bpfhook/core";
import { compileFixture, skipWithoutClang } from "./support/clang.js";
import { expectError } from "./support/expect-error.js";
import { removeTempDir } from "./support/tmp.js";

const fixtures = path.resolve(__dirname, "..", "fixtures");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("62 agent mode: AgentSession", function () {
  this.timeout(60_000);
  let dir: string;
  let victim: string;
  let object: string;
  const sessions: AgentSession[] = [];

  before(function () {
    skipWithoutClang(this);
    if (spawnSync("gcc", ["--version"]).status !== 0) {
      console.log("      skipped: gcc not found (the test programs are C)");
      this.skip();
    }
    dir = mkdtempSync(path.join(os.tmpdir(), "bpfhook-session-"));
    victim = path.join(dir, "agent_victim");
    const cc = spawnSync("gcc", ["-O1", "-g", "-pthread", "-o", victim, path.join(fixtures, "agent", "victim.c")], { encoding: "utf8" });
    assert.equal(cc.status, 0, cc.stderr);
    object = path.join(dir, "count.bpf.o");
    copyFileSync(compileFixture("agent/count.bpf.c"), object);
  });

  afterEach(() => {
    for (const s of sessions.splice(0)) {
      s.child?.kill("SIGKILL");
      s.close();
    }
  });
  after(() => removeTempDir(dir));

  async function run(args: string[], extra: { plugins?: string[]; objects?: string[] } = {}): Promise<AgentSession> {
    const s = await AgentSession.run({ objects: extra.objects ?? [object], plugins: extra.plugins ?? [], command: victim, args, stdio: ["ignore", "pipe", "inherit"] });
    sessions.push(s);
    return s;
  }

  const workCalls = (s: AgentSession) => Number(s.objects.get("count")!.map<BpfMap<number, bigint>>("calls").get(0) ?? 0n);

  /** Waits until the agents applied everything published so far. */
  const applied = (s: AgentSession) => s.backend.settle(s.backend.area.info().planSeq, []);

  it("detaches, re-attaches and attaches the same program twice at run time; the program is never restarted", async () => {
    const s = await run(["-1", "2"]);
    const obj = s.objects.get("count")!;
    await sleep(100);
    const link = s.runtime.attachments.find((l) => l.programName === "on_work")!;
    link.detach();
    await applied(s);
    const stopped = workCalls(s);
    await sleep(150);
    assert.equal(workCalls(s), stopped, "no counting once detached");

    const again: Link = await obj.program("on_work").attach();
    assert.equal(again.attached, true);
    await sleep(150);
    const resumed = workCalls(s);
    assert.ok(resumed > stopped, `counting again after the re-attach (${stopped} -> ${resumed})`);

    // A second attachment of the same program is applied too: each call now counts twice.
    const second = await obj.program("on_work").attach();
    const r0 = s.objects.get("count")!.map<BpfMap<number, bigint>>("calls").get(2)!; // returns: once per call
    const w0 = workCalls(s);
    await sleep(200);
    const r1 = s.objects.get("count")!.map<BpfMap<number, bigint>>("calls").get(2)!;
    const w1 = workCalls(s);
    const calls = Number(r1 - r0);
    assert.ok(calls > 5, `the program kept running (${calls} calls)`);
    assert.ok(Math.abs(w1 - w0 - 2 * calls) <= 4, `two attachments: ${w1 - w0} counts for ${calls} calls`);
    second.detach();
    again.detach();
    await applied(s);
    assert.equal(s.child!.exitCode, null, "still running");
  });

  it("a thread the program starts after the attach runs the probes", async () => {
    const s = await run(["40", "4", "thread"]);
    let out = "";
    s.child!.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    const st = await s.exited;
    assert.equal(st.status, 7, out);
    assert.match(out, /^thread$/m);
    assert.equal(workCalls(s), 40, "every call of the late thread counted");
  });

  it("a third party's plugin given as a directory reaches the agent; its refusal there is the attach's error", async () => {
    const echo = path.join(dir, "echo.bpf.o");
    copyFileSync(compileFixture("agent/echo.bpf.c"), echo);
    await expectError(
      // A victim that keeps running: on a loaded machine its agent may start
      // serving after main began, and must still be there to answer.
      () => run(["-1", "2"], { objects: [echo], plugins: [path.join(fixtures, "third-party", "bpfhook-plugin-echo")] }),
      "ATTACH_FAILED",
      /prog 'on_echo' .*echo.*libecho\.so.*\(process \d+\)/,
    );
  });
});

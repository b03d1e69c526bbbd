/**
 * Child process of test 14: loads one raw program through `Runtime.load` with
 * the options given as JSON in argv[2], runs it once on a 64-byte context and
 * prints one JSON line: `{ ok: true, r0 }` or `{ ok: false, code, message }`
 * (a fault, or the load's refusal).
 * A program that crashes the process prints nothing, which the parent sees.
 */
import { assembleBytes, BpfhookError, Runtime } from "@bpfhook/core";
import type { MapSpec } from "@bpfhook/core";

export interface CheckedCase {
  source: string;
  /** The program as hex bytes instead of `source` (forms the assembler lacks). */
  hex?: string;
  maps?: MapSpec[];
  backend: "jit" | "interpreter";
  checked: boolean;
  /**
   * Default: "checked" with checked, else "off": these cases test what the
   * VM itself does with trusted input (what strict mode would refuse is
   * test 37's business).
   */
  verifier?: "strict" | "checked" | "off";
}

async function main(): Promise<void> {
  const c = JSON.parse(process.argv[2] ?? "{}") as CheckedCase;
  const verifier = c.verifier ?? (c.checked ? "checked" : "off");
  const rt = await Runtime.create({ checked: c.checked, verifier, budget: 100000, backend: c.backend });
  try {
    try {
      // A program the VM refuses comes back the same way as a fault.
      const obj = rt.load({
        programs: [{ name: "p", insns: c.hex !== undefined ? Buffer.from(c.hex, "hex") : assembleBytes(c.source) }],
        maps: c.maps ?? [],
      });
      const r0 = obj.program("p").run(Buffer.alloc(64));
      process.stdout.write(`${JSON.stringify({ ok: true, r0: r0.toString() })}\n`);
    } catch (e) {
      if (!(e instanceof BpfhookError)) throw e;
      process.stdout.write(`${JSON.stringify({ ok: false, code: e.code, message: e.message })}\n`);
    }
  } finally {
    rt.close();
  }
}

void main();

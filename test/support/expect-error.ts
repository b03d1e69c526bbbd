import { strict as assert } from "node:assert";
import { BpfhookError } from "@bpfhook/core";

/** Asserts that `run` throws a BpfhookError with `code` (sync or async) and returns it. */
export async function expectError(run: () => unknown, code: string, match?: RegExp): Promise<BpfhookError> {
  try {
    await run();
  } catch (e) {
    assert.ok(e instanceof BpfhookError, `expected a BpfhookError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (match) assert.match(e.message, match);
    return e;
  }
  assert.fail(`expected ${code}, nothing was thrown`);
}

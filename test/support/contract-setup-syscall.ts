/**
 * Setup module of the syscall-trace plugin's contract (test 58), run by the
 * test kit on every runtime it creates, in worker threads too: dispatch
 * only, so attaching never rewrites the test process's syscall sites.
 */
import type { Runtime } from "@bpfhook/core";
import { setDispatchOnly } from "@bpfhook/plugin-syscall-trace";

export function setup(rt: Runtime): void {
  setDispatchOnly(rt, true);
}

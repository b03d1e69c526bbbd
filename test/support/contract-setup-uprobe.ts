/**
 * Setup module of the frida-uprobe plugin's contract (test 58), run by the
 * test kit on every runtime it creates, in worker threads too: the test
 * addon is loaded, so libbpfhook_targets.so (the hooked functions) is mapped.
 */
import type { Runtime } from "@bpfhook/core";
import { testAddon } from "./test-addon.js";

export function setup(_rt: Runtime): void {
  testAddon();
}

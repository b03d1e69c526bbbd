/** The test addon (test/native): native code the tests call into. */
import { existsSync } from "node:fs";
import path from "node:path";

export interface TestAddon {
  fireSimple(source: string, value: number): { rc: number; r0: bigint; ctx: bigint };
  fireSimpleThreads(source: string, threads: number, perThread: number): number;
}

const addonPath = path.resolve(__dirname, "..", "..", "native", "build", "Release", "testaddon.node");

export function testAddon(): TestAddon {
  if (!existsSync(addonPath)) {
    throw new Error(`test addon not built at ${addonPath}: run 'npm run build:test-native'`);
  }
  return require(addonPath) as TestAddon;
}

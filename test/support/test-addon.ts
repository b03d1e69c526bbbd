/** The test addon (test/native): native code the tests and benchmarks call into. */
import { existsSync } from "node:fs";
import path from "node:path";

export interface TestAddon {
  // simple plugin sources
  fireSimple(source: string, value: number): { rc: number; r0: bigint; ctx: bigint };
  fireSimpleThreads(source: string, threads: number, perThread: number): number;
  /** Starts `threads` native threads firing `source` in a loop (stopSimpleThreads joins them). */
  startSimpleThreads(source: string, threads: number): void;
  /** Joins them: fires made and programs run (summed). */
  stopSimpleThreads(): { fires: number; runs: number };
  // probe targets (test/native/targets) and libc
  add(a: number, b: number): bigint;
  args8(a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number): bigint;
  mix(a: number, x: number, b: number, y: number): number;
  fib(n: number): bigint;
  double(x: number): bigint;
  doubleBodyCalls(): bigint;
  escape(depth: number): bigint;
  strlen(s: string): number;
  mallocLoop(n: number, size: number): void;
  /** free(NULL) and free(malloc(size)), n times. */
  freeLoop(n: number, size: number): void;
  /** 2x + 1 if its red-zone locals survive (a probe at +10 sits between them and their use). */
  redzone(x: number): bigint;
  /** -1 for 0, else 1: test rdi,rdi; je rel32 at +3. */
  je32(p: number): bigint;
  /** a + b, 8 floats, through a function taking and returning __m256 (AVX2 CPUs only). */
  m256Add(a: number[], b: number[]): number[];
  addThreads(threads: number, perThread: number): number;
  timeCalls(which: "empty" | "double" | "usdt", iterations: number): number;
  addressOf(symbol: string): bigint;
  // system calls through libc's patched sites (test/native/addon/syscalls.cpp)
  /** ns per getppid() call over `iterations` calls made in a native loop. */
  getppidLoop(iterations: number): number;
  getppidThreads(threads: number, perThread: number): number;
  libcGetpid(): number;
  /** Bytes of xmm0-15 (and the AVX-512 state) that a libc getppid() changed (the kernel keeps them all). */
  getppidKeepsVectors(): number;
  /** open(path, O_RDONLY) then close: the fd, or -errno. */
  openClose(path: string): number;
  bufferAddress(buf: Buffer): bigint;
  killSelf(sig: number): number;
  /** dlopen()s `path` (kept open) and calls `long symbol(long arg)` in it. */
  callLibrary(path: string, symbol: string, arg: number): number;
  readBytes(symbol: string, n: number): Buffer;
  startAddThreads(threads: number): void;
  stopAddThreads(): { calls: number; good: number };
}

/** test/native/build/Release, from test/dist/support or bench/dist/... */
const repoRoot = path.resolve(__dirname, "..", "..", "..");
export const testAddonPath = path.join(repoRoot, "test", "native", "build", "Release", "testaddon.node");

export function testAddon(): TestAddon {
  if (!existsSync(testAddonPath)) {
    throw new Error(`test addon not built at ${testAddonPath}: run 'npm run build:test-native'`);
  }
  return require(testAddonPath) as TestAddon;
}

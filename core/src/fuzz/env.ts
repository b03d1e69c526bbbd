/**
 * The fixed world every fuzzed program runs in: its maps (as the verifier
 * sees them and as they are created), its context layout and the initial
 * contents of both. Every run of a program (interpreter, JIT, checked, fast)
 * starts from exactly this state, so any difference at the end is the VM's.
 */
import { MapType } from "../verifier/helpers.js";
import type { ContextLayout, VerifierMap } from "../verifier/types.js";

/** lddw map_fd N refers to FUZZ_MAPS[N]. */
export const MAP_ARR = 0;
export const MAP_HASH = 1;
export const MAP_DATA = 2;

export const FUZZ_MAPS: readonly VerifierMap[] = [
  { name: "arr", type: MapType.ARRAY, keySize: 4, valueSize: 16, maxEntries: 4 },
  { name: "hash", type: MapType.HASH, keySize: 4, valueSize: 8, maxEntries: 8 },
  // Global data: lddw map_value 2, off (src 2) points into its one value.
  { name: "data", type: MapType.ARRAY, keySize: 4, valueSize: 64, maxEntries: 1 },
];

export const CTX_SIZE = 64;
/** The upper half is writable (a plugin context with output fields); the lower half read-only. */
export const CTX_WRITABLE = { offset: 32, size: 32 } as const;

export const FUZZ_CONTEXT: ContextLayout = {
  name: "fuzz_ctx",
  size: CTX_SIZE,
  writable: [CTX_WRITABLE],
};

/** Recognisable, non-zero bytes (each run gets a fresh copy). */
export function initialCtx(): Buffer {
  const b = Buffer.alloc(CTX_SIZE);
  for (let i = 0; i < CTX_SIZE; i++) b[i] = (i * 37 + 11) & 0xff;
  return b;
}

/** Entry i of `arr` and the one value of `data`. */
export function initialArrayValue(map: number, index: number): Buffer {
  const m = FUZZ_MAPS[map]!;
  const b = Buffer.alloc(m.valueSize);
  for (let i = 0; i < b.length; i++) b[i] = (index * 16 + i * 7 + map * 3 + 1) & 0xff;
  return b;
}

/** Keys present in `hash` at the start of every run, and their values. */
export const INITIAL_HASH: readonly (readonly [key: number, value: bigint])[] = [
  [1, 0x1111n],
  [3, 0x33333333_00000003n],
];

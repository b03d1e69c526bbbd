/**
 * Which bytes of its context a program reads, so that the insertion pass
 * fills only those (every GPU thread pays for each store of the fill). A
 * forward data flow over the program's own function: which registers hold
 * the context pointer at each instruction (r1 at entry; copies by `mov`),
 * merged at joins. A load through one of them records its offset and size;
 * anything else done with the pointer (arithmetic, a store of it, passing it
 * to a subprogram or as an argument of a helper, except perf_event_output's
 * context argument, which the GPU runtime ignores) makes the answer "all of it".
 */
import { GPU_HELPER_BY_ID } from "./helpers.js";

export type ContextReads = { readonly all: true } | { readonly all: false; readonly ranges: readonly { offset: number; size: number }[] };

const SIZE: Record<number, number> = { 0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8 };
const PERF_EVENT_OUTPUT = 25;

export function contextReads(insns: Uint8Array, start: number, count: number): ContextReads {
  const v = new DataView(insns.buffer, insns.byteOffset, insns.byteLength);
  const end = start + count;
  const states = new Map<number, number>(); // pc -> bitmask of registers holding ctx
  const work: number[] = [];
  const ranges = new Map<string, { offset: number; size: number }>();
  let all = false;
  const flow = (pc: number, mask: number): void => {
    if (pc < start || pc >= end) return;
    const old = states.get(pc);
    const merged = (old ?? 0) | mask;
    if (old === merged) return;
    states.set(pc, merged);
    work.push(pc);
  };
  flow(start, 1 << 1);
  while (work.length > 0 && !all) {
    const pc = work.pop()!;
    let m = states.get(pc)!;
    const code = v.getUint8(pc * 8);
    const regs = v.getUint8(pc * 8 + 1);
    const dst = regs & 0xf;
    const src = regs >> 4;
    const off = v.getInt16(pc * 8 + 2, true);
    const imm = v.getInt32(pc * 8 + 4, true);
    const has = (r: number) => (m & (1 << r)) !== 0;
    const clear = (r: number) => (m &= ~(1 << r));
    const cls = code & 7;
    const op = code & 0xf0;
    const x = (code & 0x08) !== 0;
    let next: number[] = [pc + 1];
    switch (cls) {
      case 0x04:
      case 0x07:
        if (op === 0xb0 && x && cls === 0x07 && off === 0) {
          if (has(src)) m |= 1 << dst;
          else clear(dst);
        } else {
          if (has(dst)) all = true; // arithmetic on the pointer: offsets unknown
          clear(dst);
        }
        break;
      case 0x00:
        clear(dst);
        next = [pc + 2];
        break;
      case 0x01:
        if (has(src)) {
          const size = SIZE[code & 0x18]!;
          ranges.set(`${off}:${size}`, { offset: off, size });
        }
        clear(dst);
        break;
      case 0x02:
      case 0x03:
        if (has(dst) || (cls === 0x03 && has(src))) all = true;
        if ((code & 0xe0) === 0xc0) {
          if (imm & 1) clear(src);
          if (imm === 0xf1) clear(0);
        }
        break;
      case 0x05:
      case 0x06:
        if (op === 0x90) next = [];
        else if (op === 0x80) {
          const isHelper = (code & 0x08) === 0 && src === 0;
          // A helper sees its own arguments only; a subprogram (or anything else) all five.
          const args = isHelper ? (GPU_HELPER_BY_ID.get(imm)?.args ?? 5) : 5;
          for (let r = 1; r <= args; r++) if (has(r) && !(isHelper && imm === PERF_EVENT_OUTPUT && r === 1)) all = true;
          for (let r = 0; r <= 5; r++) clear(r);
        } else if (op === 0x00) next = [pc + 1 + (cls === 0x06 ? imm : off)];
        else next = [pc + 1, pc + 1 + off];
        break;
    }
    for (const n of next) flow(n, m);
  }
  if (all) return { all: true };
  return { all: false, ranges: [...ranges.values()].sort((a, b) => a.offset - b.offset) };
}

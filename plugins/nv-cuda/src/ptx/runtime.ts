/**
 * The PTX runtime compiled programs call: the helpers (`bh_helper_<id>`) and
 * the globals the host fills at load. One copy per module, whatever the
 * number of programs inserted into it.
 *
 * Globals (all `.visible`, so the host finds them with cuModuleGetGlobal):
 *   bh_map_table[N] u64: device address of each map's descriptor, by the
 *     object's map index (lddw imm).
 *   bh_ring[4] u64: the GPU ring buffer: { data, size, head, dropped }. The
 *     host points `data` at `size` bytes of device memory (or mapped host
 *     memory); a writer reserves with an atomic add on `head`, fails when the
 *     record would pass `size` (counting it in `dropped`), writes the record
 *     and commits by storing its length last (after membar.sys). The host
 *     drains committed records up to `head`, then zeroes them and `head`
 *     (between launches, or with its own protocol later).
 *   bh_pid_tgid u64: the host process's tgid << 32 (bpf_get_current_pid_tgid
 *     returns it | the global thread index).
 *
 * Map descriptor (64 bytes, u64 fields; the host builds one per map in
 * device memory):
 *   +0 type (kernel ids: 1 hash, 2 array, 6 per-CPU array, 9 LRU hash;
 *      bpftime's 1502 GPU array; other ids: treated as arrays)
 *   +8 key_size  +16 value_size  +24 max_entries
 *   +32 values: device address of the value slots (stride: value_size
 *       rounded up to 8)
 *   +40 keys: hash only, key slots (stride: key_size rounded up to 8)
 *   +48 states: hash only, one u32 per slot: 0 empty, 1 being written,
 *       2 live, 3 deleted
 *   +56 capacity: hash: slots (a power of two, >= max_entries); per-CPU
 *       array (6): shards (a power of two; 0 = one copy): entry i of the
 *       calling thread is at values + (i * shards + (global linear thread
 *       index & (shards - 1))) * stride, and the host sums the shards
 * Hash slots are found by FNV-1a 64 of the key bytes, masked by capacity-1,
 * then linear probing; the host side must hash the same way.
 *
 * Ring records: u32 length (whole record, committed last), u32 kind
 * (1 trace_printk, 2 perf_event_output, 3 puts), u64 extra (trace_printk: the
 * format's size; perf_event_output: the map's descriptor address), then the
 * payload (trace_printk: three u64 arguments then the format bytes;
 * perf_event_output: the data; puts: the string's bytes), padded to 8.
 */
import { GPU_HELPERS, helperSymbol } from "./helpers.js";

export interface RuntimeOptions {
  /** Slots of bh_map_table (at least 1). */
  readonly mapSlots?: number;
  /** Emit only the helpers with these ids (default: all). */
  readonly helpers?: readonly number[];
}

const MAP = { type: 0, keySize: 8, valueSize: 16, maxEntries: 24, values: 32, keys: 40, states: 48, capacity: 56 } as const;
export const MAP_DESCRIPTOR = Object.freeze({ ...MAP, size: 64 });
export const RING_RECORD = Object.freeze({ printk: 1, perf: 2, puts: 3, header: 16 });
const ENOENT = 2;
const E2BIG = 7;
const EEXIST = 17;
const EINVAL = 22;
const ENOSPC = 28;
const PUTS_MAX = 256;

/**
 * PTX that sets 64-bit `dst` to the calling thread's global linear index:
 * the block's linear index times the threads per block, plus the thread's
 * linear index in its block. `tmp` (64-bit) and `w` (three 32-bit) are
 * scratch registers the caller declares.
 */
const globalThreadIndex = (dst: string, tmp: string, w: readonly [string, string, string]): string => {
  const [a, b, c] = w;
  return [
    `mov.u32 ${a}, %ctaid.z;`,
    `mov.u32 ${b}, %nctaid.y;`,
    `mov.u32 ${c}, %ctaid.y;`,
    `mad.lo.u32 ${a}, ${a}, ${b}, ${c};`,
    `mov.u32 ${b}, %nctaid.x;`,
    `mov.u32 ${c}, %ctaid.x;`,
    `mad.lo.u32 ${a}, ${a}, ${b}, ${c};`,
    `cvt.u64.u32 ${dst}, ${a};`,
    `mov.u32 ${a}, %ntid.x;`,
    `mov.u32 ${b}, %ntid.y;`,
    `mul.lo.u32 ${a}, ${a}, ${b};`,
    `mov.u32 ${b}, %ntid.z;`,
    `mul.lo.u32 ${a}, ${a}, ${b};`,
    `cvt.u64.u32 ${tmp}, ${a};`,
    `mul.lo.u64 ${dst}, ${dst}, ${tmp};`,
    `mov.u32 ${a}, %tid.z;`,
    `mov.u32 ${b}, %ntid.y;`,
    `mov.u32 ${c}, %tid.y;`,
    `mad.lo.u32 ${a}, ${a}, ${b}, ${c};`,
    `mov.u32 ${b}, %ntid.x;`,
    `mov.u32 ${c}, %tid.x;`,
    `mad.lo.u32 ${a}, ${a}, ${b}, ${c};`,
    `cvt.u64.u32 ${tmp}, ${a};`,
    `add.s64 ${dst}, ${dst}, ${tmp};`,
  ]
    .map((l) => `\t${l}`)
    .join("\n");
};

const fn = (id: number, params: readonly string[], body: string): string =>
  [
    `.func (.param .b64 ret) ${helperSymbol(id)}(${params.map((p) => `.param .b64 ${p}`).join(", ")})`,
    "{",
    body.trim().replace(/^\s*/gm, "\t"),
    "}",
    "",
  ].join("\n");

const xyz = (id: number, sreg: string) =>
  fn(
    id,
    ["x", "y", "z"],
    `
  .reg .b64 %a<3>;
  .reg .b64 %v;
  .reg .b32 %w;
  ld.param.b64 %a0, [x];
  ld.param.b64 %a1, [y];
  ld.param.b64 %a2, [z];
  mov.u32 %w, ${sreg}.x;
  cvt.u64.u32 %v, %w;
  st.u64 [%a0], %v;
  mov.u32 %w, ${sreg}.y;
  cvt.u64.u32 %v, %w;
  st.u64 [%a1], %v;
  mov.u32 %w, ${sreg}.z;
  cvt.u64.u32 %v, %w;
  st.u64 [%a2], %v;
  st.param.b64 [ret], 0;
  ret;`,
  );

const special32 = (id: number, sreg: string) =>
  fn(
    id,
    [],
    `
  .reg .b32 %w;
  .reg .b64 %v;
  mov.u32 %w, ${sreg};
  cvt.u64.u32 %v, %w;
  st.param.b64 [ret], %v;
  ret;`,
  );

const timer = (id: number) =>
  fn(
    id,
    [],
    `
  .reg .b64 %v;
  mov.u64 %v, %globaltimer;
  st.param.b64 [ret], %v;
  ret;`,
  );

/** Internal functions the helpers share. */
const INTERNAL = `
// FNV-1a 64 of n bytes at p
.func (.param .b64 ret) bh_hash(.param .b64 p, .param .b64 n)
{
	.reg .b64 %p, %n, %h, %i, %b, %a;
	.reg .pred %q;
	ld.param.b64 %p, [p];
	ld.param.b64 %n, [n];
	mov.b64 %h, -3750763034362895579;
	mov.b64 %i, 0;
$loop:
	setp.ge.u64 %q, %i, %n;
	@%q bra $done;
	add.s64 %a, %p, %i;
	ld.u8 %b, [%a];
	xor.b64 %h, %h, %b;
	mul.lo.s64 %h, %h, 1099511628211;
	add.s64 %i, %i, 1;
	bra $loop;
$done:
	st.param.b64 [ret], %h;
	ret;
}

// 1 when n bytes at a and b are equal
.func (.param .b64 ret) bh_memeq(.param .b64 a, .param .b64 b, .param .b64 n)
{
	.reg .b64 %a, %b, %n, %i, %x, %y, %pa, %pb;
	.reg .pred %q;
	ld.param.b64 %a, [a];
	ld.param.b64 %b, [b];
	ld.param.b64 %n, [n];
	mov.b64 %i, 0;
$loop:
	setp.ge.u64 %q, %i, %n;
	@%q bra $equal;
	add.s64 %pa, %a, %i;
	add.s64 %pb, %b, %i;
	ld.u8 %x, [%pa];
	ld.u8 %y, [%pb];
	setp.ne.u64 %q, %x, %y;
	@%q bra $differ;
	add.s64 %i, %i, 1;
	bra $loop;
$equal:
	st.param.b64 [ret], 1;
	ret;
$differ:
	st.param.b64 [ret], 0;
	ret;
}

// copies n bytes from s to d
.func bh_memcpy(.param .b64 d, .param .b64 s, .param .b64 n)
{
	.reg .b64 %d, %s, %n, %i, %x, %pd, %ps;
	.reg .pred %q;
	ld.param.b64 %d, [d];
	ld.param.b64 %s, [s];
	ld.param.b64 %n, [n];
	mov.b64 %i, 0;
$loop:
	setp.ge.u64 %q, %i, %n;
	@%q bra $done;
	add.s64 %pd, %d, %i;
	add.s64 %ps, %s, %i;
	ld.u8 %x, [%ps];
	st.u8 [%pd], %x;
	add.s64 %i, %i, 1;
	bra $loop;
$done:
	ret;
}

// the hash slot holding key, or -1
.func (.param .b64 ret) bh_hash_find(.param .b64 map, .param .b64 key)
{
	.reg .b64 %m, %k, %ks, %kstride, %cap, %mask, %keys, %states, %h, %slot, %n, %a, %eq;
	.reg .b32 %st;
	.reg .pred %q;
	ld.param.b64 %m, [map];
	ld.param.b64 %k, [key];
	ld.u64 %ks, [%m+${MAP.keySize}];
	ld.u64 %cap, [%m+${MAP.capacity}];
	ld.u64 %keys, [%m+${MAP.keys}];
	ld.u64 %states, [%m+${MAP.states}];
	add.s64 %kstride, %ks, 7;
	and.b64 %kstride, %kstride, -8;
	sub.s64 %mask, %cap, 1;
	{
	.param .b64 h0;
	.param .b64 h1;
	.param .b64 hr;
	st.param.b64 [h0], %k;
	st.param.b64 [h1], %ks;
	call (hr), bh_hash, (h0, h1);
	ld.param.b64 %h, [hr];
	}
	and.b64 %slot, %h, %mask;
	mov.b64 %n, 0;
$loop:
	setp.ge.u64 %q, %n, %cap;
	@%q bra $missing;
	mad.lo.s64 %a, %slot, 4, %states;
	ld.volatile.u32 %st, [%a];
	setp.eq.u32 %q, %st, 0;
	@%q bra $missing;
	setp.ne.u32 %q, %st, 2;
	@%q bra $next;
	mad.lo.s64 %a, %slot, %kstride, %keys;
	{
	.param .b64 e0;
	.param .b64 e1;
	.param .b64 e2;
	.param .b64 er;
	st.param.b64 [e0], %a;
	st.param.b64 [e1], %k;
	st.param.b64 [e2], %ks;
	call (er), bh_memeq, (e0, e1, e2);
	ld.param.b64 %eq, [er];
	}
	setp.ne.u64 %q, %eq, 0;
	@%q bra $found;
$next:
	add.s64 %slot, %slot, 1;
	and.b64 %slot, %slot, %mask;
	add.s64 %n, %n, 1;
	bra $loop;
$found:
	st.param.b64 [ret], %slot;
	ret;
$missing:
	st.param.b64 [ret], -1;
	ret;
}

// address of the value of an array map's entry *(u32 *)key, or 0 past max_entries
.func (.param .b64 ret) bh_array_value(.param .b64 map, .param .b64 key)
{
	.reg .b64 %m, %k, %i, %max, %stride, %v, %t, %sh, %g, %h;
	.reg .b32 %w, %a, %b, %c;
	.reg .pred %q;
	ld.param.b64 %m, [map];
	ld.param.b64 %k, [key];
	ld.u32 %w, [%k];
	cvt.u64.u32 %i, %w;
	ld.u64 %max, [%m+${MAP.maxEntries}];
	setp.ge.u64 %q, %i, %max;
	@%q bra $out;
	// per-CPU array: per-thread shards (capacity = shards, a power of two),
	// entry i of shard s at i * shards + s, summed by the host
	ld.u64 %t, [%m+${MAP.type}];
	setp.ne.u64 %q, %t, 6;
	@%q bra $flat;
	ld.u64 %sh, [%m+${MAP.capacity}];
	setp.eq.u64 %q, %sh, 0;
	@%q bra $flat;
${globalThreadIndex("%g", "%h", ["%a", "%b", "%c"])}
	sub.s64 %h, %sh, 1;
	and.b64 %g, %g, %h;
	mad.lo.s64 %i, %i, %sh, %g;
$flat:
	ld.u64 %stride, [%m+${MAP.valueSize}];
	add.s64 %stride, %stride, 7;
	and.b64 %stride, %stride, -8;
	ld.u64 %v, [%m+${MAP.values}];
	mad.lo.s64 %v, %i, %stride, %v;
	st.param.b64 [ret], %v;
	ret;
$out:
	st.param.b64 [ret], 0;
	ret;
}

// 1 for hash maps (hash, LRU hash), 0 for the rest
.func (.param .b64 ret) bh_is_hash(.param .b64 map)
{
	.reg .b64 %m, %t;
	.reg .pred %q, %r;
	ld.param.b64 %m, [map];
	ld.u64 %t, [%m+${MAP.type}];
	setp.eq.u64 %q, %t, 1;
	setp.eq.u64 %r, %t, 9;
	or.pred %q, %q, %r;
	selp.b64 %t, 1, 0, %q;
	st.param.b64 [ret], %t;
	ret;
}

// reserves len bytes (rounded up to 8) in the ring; 0 when full or not set up
.func (.param .b64 ret) bh_ring_reserve(.param .b64 len)
{
	.reg .b64 %len, %data, %size, %pos, %end;
	.reg .pred %q;
	ld.param.b64 %len, [len];
	add.s64 %len, %len, 7;
	and.b64 %len, %len, -8;
	ld.volatile.global.u64 %data, [bh_ring];
	ld.volatile.global.u64 %size, [bh_ring+8];
	setp.eq.u64 %q, %data, 0;
	@%q bra $none;
	atom.global.add.u64 %pos, [bh_ring+16], %len;
	add.s64 %end, %pos, %len;
	setp.gt.u64 %q, %end, %size;
	@%q bra $full;
	add.s64 %data, %data, %pos;
	st.param.b64 [ret], %data;
	ret;
$full:
	atom.global.add.u64 %end, [bh_ring+24], 1;
$none:
	st.param.b64 [ret], 0;
	ret;
}
`;

function helperBody(id: number): string | undefined {
  switch (id) {
    case 1:
      return fn(
        1,
        ["map", "key"],
        `
  .reg .b64 %m, %k, %r, %s, %stride;
  .reg .pred %q;
  ld.param.b64 %m, [map];
  ld.param.b64 %k, [key];
  { .param .b64 i0; .param .b64 ir; st.param.b64 [i0], %m; call (ir), bh_is_hash, (i0); ld.param.b64 %r, [ir]; }
  setp.ne.u64 %q, %r, 0;
  @%q bra $hash;
  { .param .b64 a0; .param .b64 a1; .param .b64 ar; st.param.b64 [a0], %m; st.param.b64 [a1], %k; call (ar), bh_array_value, (a0, a1); ld.param.b64 %r, [ar]; }
  st.param.b64 [ret], %r;
  ret;
$hash:
  { .param .b64 f0; .param .b64 f1; .param .b64 fr; st.param.b64 [f0], %m; st.param.b64 [f1], %k; call (fr), bh_hash_find, (f0, f1); ld.param.b64 %s, [fr]; }
  setp.lt.s64 %q, %s, 0;
  @%q bra $null;
  ld.u64 %stride, [%m+${MAP.valueSize}];
  add.s64 %stride, %stride, 7;
  and.b64 %stride, %stride, -8;
  ld.u64 %r, [%m+${MAP.values}];
  mad.lo.s64 %r, %s, %stride, %r;
  st.param.b64 [ret], %r;
  ret;
$null:
  st.param.b64 [ret], 0;
  ret;`,
      );
    case 2:
      return fn(
        2,
        ["map", "key", "value", "flags"],
        `
  .reg .b64 %m, %k, %v, %f, %r, %s, %stride, %vs, %ks, %kstride, %cap, %mask, %n, %a, %dst;
  .reg .b32 %old;
  .reg .pred %q;
  ld.param.b64 %m, [map];
  ld.param.b64 %k, [key];
  ld.param.b64 %v, [value];
  ld.param.b64 %f, [flags];
  ld.u64 %vs, [%m+${MAP.valueSize}];
  add.s64 %stride, %vs, 7;
  and.b64 %stride, %stride, -8;
  { .param .b64 i0; .param .b64 ir; st.param.b64 [i0], %m; call (ir), bh_is_hash, (i0); ld.param.b64 %r, [ir]; }
  setp.ne.u64 %q, %r, 0;
  @%q bra $hash;
  { .param .b64 a0; .param .b64 a1; .param .b64 ar; st.param.b64 [a0], %m; st.param.b64 [a1], %k; call (ar), bh_array_value, (a0, a1); ld.param.b64 %dst, [ar]; }
  setp.eq.u64 %q, %dst, 0;
  @%q bra $e2big;
  setp.eq.u64 %q, %f, 1;
  @%q bra $eexist;
  bra $copy;
$hash:
  { .param .b64 f0; .param .b64 f1; .param .b64 fr; st.param.b64 [f0], %m; st.param.b64 [f1], %k; call (fr), bh_hash_find, (f0, f1); ld.param.b64 %s, [fr]; }
  setp.lt.s64 %q, %s, 0;
  @%q bra $insert;
  setp.eq.u64 %q, %f, 1;
  @%q bra $eexist;
  ld.u64 %dst, [%m+${MAP.values}];
  mad.lo.s64 %dst, %s, %stride, %dst;
  bra $copy;
$insert:
  setp.eq.u64 %q, %f, 2;
  @%q bra $enoent;
  ld.u64 %ks, [%m+${MAP.keySize}];
  add.s64 %kstride, %ks, 7;
  and.b64 %kstride, %kstride, -8;
  ld.u64 %cap, [%m+${MAP.capacity}];
  sub.s64 %mask, %cap, 1;
  { .param .b64 h0; .param .b64 h1; .param .b64 hr; st.param.b64 [h0], %k; st.param.b64 [h1], %ks; call (hr), bh_hash, (h0, h1); ld.param.b64 %s, [hr]; }
  and.b64 %s, %s, %mask;
  mov.b64 %n, 0;
$probe:
  setp.ge.u64 %q, %n, %cap;
  @%q bra $e2big;
  ld.u64 %a, [%m+${MAP.states}];
  mad.lo.s64 %a, %s, 4, %a;
  atom.cas.b32 %old, [%a], 0, 1;
  setp.eq.u32 %q, %old, 0;
  @%q bra $claimed;
  atom.cas.b32 %old, [%a], 3, 1;
  setp.eq.u32 %q, %old, 3;
  @%q bra $claimed;
  add.s64 %s, %s, 1;
  and.b64 %s, %s, %mask;
  add.s64 %n, %n, 1;
  bra $probe;
$claimed:
  ld.u64 %dst, [%m+${MAP.keys}];
  mad.lo.s64 %dst, %s, %kstride, %dst;
  { .param .b64 c0; .param .b64 c1; .param .b64 c2; st.param.b64 [c0], %dst; st.param.b64 [c1], %k; st.param.b64 [c2], %ks; call bh_memcpy, (c0, c1, c2); }
  ld.u64 %dst, [%m+${MAP.values}];
  mad.lo.s64 %dst, %s, %stride, %dst;
  { .param .b64 d0; .param .b64 d1; .param .b64 d2; st.param.b64 [d0], %dst; st.param.b64 [d1], %v; st.param.b64 [d2], %vs; call bh_memcpy, (d0, d1, d2); }
  membar.gl;
  st.volatile.u32 [%a], 2;
  st.param.b64 [ret], 0;
  ret;
$copy:
  { .param .b64 e0; .param .b64 e1; .param .b64 e2; st.param.b64 [e0], %dst; st.param.b64 [e1], %v; st.param.b64 [e2], %vs; call bh_memcpy, (e0, e1, e2); }
  st.param.b64 [ret], 0;
  ret;
$e2big:
  st.param.b64 [ret], ${-E2BIG};
  ret;
$eexist:
  st.param.b64 [ret], ${-EEXIST};
  ret;
$enoent:
  st.param.b64 [ret], ${-ENOENT};
  ret;`,
      );
    case 3:
      return fn(
        3,
        ["map", "key"],
        `
  .reg .b64 %m, %k, %r, %s, %a;
  .reg .b32 %old;
  .reg .pred %q;
  ld.param.b64 %m, [map];
  ld.param.b64 %k, [key];
  { .param .b64 i0; .param .b64 ir; st.param.b64 [i0], %m; call (ir), bh_is_hash, (i0); ld.param.b64 %r, [ir]; }
  setp.eq.u64 %q, %r, 0;
  @%q bra $einval;
  { .param .b64 f0; .param .b64 f1; .param .b64 fr; st.param.b64 [f0], %m; st.param.b64 [f1], %k; call (fr), bh_hash_find, (f0, f1); ld.param.b64 %s, [fr]; }
  setp.lt.s64 %q, %s, 0;
  @%q bra $enoent;
  ld.u64 %a, [%m+${MAP.states}];
  mad.lo.s64 %a, %s, 4, %a;
  atom.cas.b32 %old, [%a], 2, 3;
  setp.ne.u32 %q, %old, 2;
  @%q bra $enoent;
  st.param.b64 [ret], 0;
  ret;
$enoent:
  st.param.b64 [ret], ${-ENOENT};
  ret;
$einval:
  st.param.b64 [ret], ${-EINVAL};
  ret;`,
      );
    case 5:
    case 502:
      return timer(id);
    case 6:
      return fn(
        6,
        ["fmt", "size", "a1", "a2", "a3"],
        `
  .reg .b64 %fmt, %size, %a<3>, %len, %rec, %p;
  .reg .b32 %w;
  .reg .pred %q;
  ld.param.b64 %fmt, [fmt];
  ld.param.b64 %size, [size];
  ld.param.b64 %a0, [a1];
  ld.param.b64 %a1, [a2];
  ld.param.b64 %a2, [a3];
  add.s64 %len, %size, ${16 + 24};
  { .param .b64 r0; .param .b64 rr; st.param.b64 [r0], %len; call (rr), bh_ring_reserve, (r0); ld.param.b64 %rec, [rr]; }
  setp.eq.u64 %q, %rec, 0;
  @%q bra $full;
  st.u32 [%rec+4], ${RING_RECORD.printk};
  st.u64 [%rec+8], %size;
  st.u64 [%rec+16], %a0;
  st.u64 [%rec+24], %a1;
  st.u64 [%rec+32], %a2;
  add.s64 %p, %rec, 40;
  { .param .b64 c0; .param .b64 c1; .param .b64 c2; st.param.b64 [c0], %p; st.param.b64 [c1], %fmt; st.param.b64 [c2], %size; call bh_memcpy, (c0, c1, c2); }
  membar.sys;
  cvt.u32.u64 %w, %len;
  st.volatile.u32 [%rec], %w;
  st.param.b64 [ret], %size;
  ret;
$full:
  st.param.b64 [ret], ${-ENOSPC};
  ret;`,
      );
    case 8:
    case 509:
      return special32(id, "%smid");
    case 510:
      return special32(id, "%warpid");
    case 511:
      return special32(id, "%laneid");
    case 14:
      return fn(
        14,
        [],
        `
  .reg .b64 %v, %t, %n;
  .reg .b32 %w<3>;
  ld.volatile.global.u64 %v, [bh_pid_tgid];
  and.b64 %v, %v, -4294967296;
${globalThreadIndex("%t", "%n", ["%w0", "%w1", "%w2"])}
  and.b64 %t, %t, 4294967295;
  or.b64 %v, %v, %t;
  st.param.b64 [ret], %v;
  ret;`,
      );
    case 25:
      return fn(
        25,
        ["ctx", "map", "flags", "data", "size"],
        `
  .reg .b64 %m, %data, %size, %len, %rec, %p;
  .reg .b32 %w;
  .reg .pred %q;
  ld.param.b64 %m, [map];
  ld.param.b64 %data, [data];
  ld.param.b64 %size, [size];
  add.s64 %len, %size, 16;
  { .param .b64 r0; .param .b64 rr; st.param.b64 [r0], %len; call (rr), bh_ring_reserve, (r0); ld.param.b64 %rec, [rr]; }
  setp.eq.u64 %q, %rec, 0;
  @%q bra $full;
  st.u32 [%rec+4], ${RING_RECORD.perf};
  st.u64 [%rec+8], %m;
  add.s64 %p, %rec, 16;
  { .param .b64 c0; .param .b64 c1; .param .b64 c2; st.param.b64 [c0], %p; st.param.b64 [c1], %data; st.param.b64 [c2], %size; call bh_memcpy, (c0, c1, c2); }
  membar.sys;
  cvt.u32.u64 %w, %len;
  st.volatile.u32 [%rec], %w;
  st.param.b64 [ret], 0;
  ret;
$full:
  st.param.b64 [ret], ${-ENOSPC};
  ret;`,
      );
    case 501:
      return fn(
        501,
        ["str"],
        `
  .reg .b64 %s, %n, %a, %c, %len, %rec, %p;
  .reg .b32 %w;
  .reg .pred %q;
  ld.param.b64 %s, [str];
  mov.b64 %n, 0;
$strlen:
  setp.ge.u64 %q, %n, ${PUTS_MAX};
  @%q bra $counted;
  add.s64 %a, %s, %n;
  ld.u8 %c, [%a];
  setp.eq.u64 %q, %c, 0;
  @%q bra $counted;
  add.s64 %n, %n, 1;
  bra $strlen;
$counted:
  add.s64 %len, %n, 16;
  { .param .b64 r0; .param .b64 rr; st.param.b64 [r0], %len; call (rr), bh_ring_reserve, (r0); ld.param.b64 %rec, [rr]; }
  setp.eq.u64 %q, %rec, 0;
  @%q bra $full;
  st.u32 [%rec+4], ${RING_RECORD.puts};
  st.u64 [%rec+8], 0;
  add.s64 %p, %rec, 16;
  { .param .b64 c0; .param .b64 c1; .param .b64 c2; st.param.b64 [c0], %p; st.param.b64 [c1], %s; st.param.b64 [c2], %n; call bh_memcpy, (c0, c1, c2); }
  membar.sys;
  cvt.u32.u64 %w, %len;
  st.volatile.u32 [%rec], %w;
  st.param.b64 [ret], 0;
  ret;
$full:
  st.param.b64 [ret], ${-ENOSPC};
  ret;`,
      );
    case 503:
      return xyz(503, "%ctaid");
    case 504:
      return xyz(504, "%ntid");
    case 505:
      return xyz(505, "%tid");
    case 508:
      return xyz(508, "%nctaid");
    case 506:
      return fn(506, [], "membar.sys;\nst.param.b64 [ret], 0;\nret;");
    case 507:
      return fn(507, [], "exit;\nst.param.b64 [ret], 0;\nret;");
    default:
      return undefined;
  }
}

/** The runtime's PTX: globals, internal functions and the helpers. */
export function runtimePtx(options: RuntimeOptions = {}): string {
  const slots = Math.max(1, options.mapSlots ?? 1);
  const ids = options.helpers ?? GPU_HELPERS.map((h) => h.id);
  const parts = [
    "// bpfhook nv-cuda runtime",
    `.visible .global .align 8 .u64 bh_map_table[${slots}];`,
    ".visible .global .align 8 .u64 bh_ring[4];",
    ".visible .global .align 8 .u64 bh_pid_tgid;",
    INTERNAL.trim(),
    "",
  ];
  for (const id of ids) {
    const body = helperBody(id);
    if (body === undefined) throw new Error(`runtime: no device function for helper ${id}`);
    parts.push(body);
  }
  return parts.join("\n");
}

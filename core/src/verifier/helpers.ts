/**
 * The signatures of the helpers every program gets (core/native/helpers and
 * the map helpers of core/native/maps), for the verifier: the TypeScript
 * twin of the native argument prototypes (helpers/src/register.cpp kProtos,
 * maps/src/map_helpers.cpp), plus what the VM's checked mode does not need:
 * return kinds, record release, callbacks, tail calls. Plugins declare their
 * own helpers' signatures through the SDK.
 */
import { BPF_MAP_TYPE } from "../loader/map-types.js";
import type { ArgKind, HelperSignature } from "./types.js";

/** Kernel map type ids: the loader's table. */
export const MapType = BPF_MAP_TYPE;

const KEYED = [MapType.HASH, MapType.ARRAY, MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_HASH, MapType.LPM_TRIE];
const QUEUES = [MapType.QUEUE, MapType.STACK];
const PUSH_PEEK = [...QUEUES, MapType.BLOOM_FILTER];
const ITERABLE = [MapType.HASH, MapType.ARRAY, MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_HASH];

const scalar = (id: number, name: string, args: ArgKind[] = []): HelperSignature => ({ id, name, args, ret: "scalar" });
const read = (id: number, name: string): HelperSignature =>
  scalar(id, name, ["ptr_to_uninit_mem", "const_size_or_zero", "anything"]);
/** The string reads write up to and including the NUL, not the rest of the buffer. */
const readStr = (id: number, name: string): HelperSignature => ({ ...read(id, name), partialWrite: true });

const TABLE: readonly HelperSignature[] = [
  { id: 1, name: "bpf_map_lookup_elem", args: ["const_map_ptr", "ptr_to_map_key"], mapTypes: KEYED, ret: "map_value_or_null" },
  { id: 2, name: "bpf_map_update_elem", args: ["const_map_ptr", "ptr_to_map_key", "ptr_to_map_value", "anything"], mapTypes: KEYED, ret: "scalar" },
  { id: 3, name: "bpf_map_delete_elem", args: ["const_map_ptr", "ptr_to_map_key"], mapTypes: KEYED, ret: "scalar" },
  read(4, "bpf_probe_read"),
  scalar(5, "bpf_ktime_get_ns"),
  // The kernel declares only fmt and its size: bpf_printk passes 0 to 3 values after them.
  scalar(6, "bpf_trace_printk", ["ptr_to_mem", "const_size"]),
  scalar(7, "bpf_get_prandom_u32"),
  scalar(8, "bpf_get_smp_processor_id"),
  { id: 12, name: "bpf_tail_call", args: ["ptr_to_ctx", "const_map_ptr", "anything"], mapTypes: [MapType.PROG_ARRAY], ret: "scalar", tailCall: true },
  scalar(14, "bpf_get_current_pid_tgid"),
  scalar(15, "bpf_get_current_uid_gid"),
  scalar(16, "bpf_get_current_comm", ["ptr_to_uninit_mem", "const_size"]),
  { id: 25, name: "bpf_perf_event_output", args: ["ptr_to_ctx", "const_map_ptr", "anything", "ptr_to_mem", "const_size_or_zero"], mapTypes: [MapType.PERF_EVENT_ARRAY], ret: "scalar" },
  { id: 27, name: "bpf_get_stackid", args: ["ptr_to_ctx", "const_map_ptr", "anything"], mapTypes: [MapType.STACK_TRACE], ret: "scalar" },
  readStr(45, "bpf_probe_read_str"),
  scalar(58, "bpf_override_return", ["ptr_to_ctx", "anything"]),
  scalar(67, "bpf_get_stack", ["ptr_to_ctx", "ptr_to_uninit_mem", "const_size_or_zero", "anything"]),
  { id: 87, name: "bpf_map_push_elem", args: ["const_map_ptr", "ptr_to_map_value", "anything"], mapTypes: PUSH_PEEK, ret: "scalar" },
  // Empty queue or stack: nothing is written.
  { id: 88, name: "bpf_map_pop_elem", args: ["const_map_ptr", "ptr_to_uninit_map_value"], mapTypes: QUEUES, ret: "scalar", partialWrite: true },
  { id: 89, name: "bpf_map_peek_elem", args: ["const_map_ptr", "ptr_to_uninit_map_value"], mapTypes: PUSH_PEEK, ret: "scalar", partialWrite: true },
  read(112, "bpf_probe_read_user"),
  read(113, "bpf_probe_read_kernel"),
  readStr(114, "bpf_probe_read_user_str"),
  readStr(115, "bpf_probe_read_kernel_str"),
  scalar(125, "bpf_ktime_get_boot_ns"),
  { id: 130, name: "bpf_ringbuf_output", args: ["const_map_ptr", "ptr_to_mem", "const_size_or_zero", "anything"], mapTypes: [MapType.RINGBUF], ret: "scalar" },
  { id: 131, name: "bpf_ringbuf_reserve", args: ["const_map_ptr", "anything", "anything"], mapTypes: [MapType.RINGBUF], ret: "ringbuf_mem_or_null", retSizeArg: 1 },
  { id: 132, name: "bpf_ringbuf_submit", args: ["ptr_to_ringbuf_mem", "anything"], ret: "scalar", releasesRecord: true },
  { id: 133, name: "bpf_ringbuf_discard", args: ["ptr_to_ringbuf_mem", "anything"], ret: "scalar", releasesRecord: true },
  { id: 134, name: "bpf_ringbuf_query", args: ["const_map_ptr", "anything"], mapTypes: [MapType.RINGBUF], ret: "scalar" },
  scalar(160, "bpf_ktime_get_coarse_ns"),
  {
    id: 164,
    name: "bpf_for_each_map_elem",
    args: ["const_map_ptr", "ptr_to_func", "ptr_to_stack_or_null", "anything"],
    mapTypes: ITERABLE,
    ret: "scalar",
    callback: "for_each_map_elem",
  },
  // Writes up to the NUL, and nothing on a format error.
  { ...scalar(165, "bpf_snprintf", ["ptr_to_uninit_mem", "const_size_or_zero", "ptr_to_const_str", "ptr_to_mem_or_null", "const_size_or_zero"]), partialWrite: true },
  scalar(173, "bpf_get_func_ip", ["ptr_to_ctx"]),
  scalar(174, "bpf_get_attach_cookie", ["ptr_to_ctx"]),
  scalar(177, "bpf_trace_vprintk", ["ptr_to_mem", "const_size", "ptr_to_mem_or_null", "const_size_or_zero"]),
  { id: 181, name: "bpf_loop", args: ["anything", "ptr_to_func", "ptr_to_stack_or_null", "anything"], ret: "scalar", callback: "loop" },
  scalar(182, "bpf_strncmp", ["ptr_to_mem", "const_size", "ptr_to_const_str"]),
  scalar(183, "bpf_get_func_arg", ["ptr_to_ctx", "anything", "ptr_to_long"]),
  scalar(184, "bpf_get_func_ret", ["ptr_to_ctx", "ptr_to_long"]),
  scalar(185, "bpf_get_func_arg_cnt", ["ptr_to_ctx"]),
  scalar(186, "bpf_get_retval"),
  scalar(187, "bpf_set_retval", ["anything"]),
];

/** The standard helpers' signatures by id (a fresh map: callers add their plugins' helpers to it). */
export function standardHelpers(): Map<number, HelperSignature> {
  return new Map(TABLE.map((h) => [h.id, h]));
}

/** bpf_get_stackid is registered with the maps (it needs a stack-trace map), the rest with the helpers. */
export const STANDARD_HELPER_IDS: readonly number[] = TABLE.map((h) => h.id);

/** The ELF loader: clang-built eBPF objects in, programs and map specs out. */
export { loadObject } from "./object.js";
export type { BpfObject, BtfKindName, BtfMemberInfo, BtfTypeInfo, LinkedFunction, LoadObjectOptions, MapSpec, ProgramSpec } from "./types.js";
export { BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, BPF_F_RDONLY_PROG, BPF_MAP_TYPE } from "./map-types.js";
export { BPF_PSEUDO_CALL, BPF_PSEUDO_FUNC, BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE } from "./insn.js";

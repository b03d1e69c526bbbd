/** What loadObject returns: plain data, ready to hand to the VM and maps. */

export interface BpfObject {
  /** The path, when the object was read from a file. */
  file?: string;
  /** Contents of the `license` section up to its NUL ("" when absent). */
  license: string;
  /** Contents of the `version` section (a kernel version code), when present. */
  kernelVersion?: number;
  programs: ProgramSpec[];
  /** lddw src=5/6 carry an index into this array. */
  maps: MapSpec[];
  /**
   * Named structs of the object's BTF that are `size` bytes (none without
   * BTF): how the CLI decodes ring and perf buffer records, which carry no
   * type of their own.
   */
  structsOfSize?: (size: number) => BtfTypeInfo[];
}

export interface ProgramSpec {
  /** The function's symbol name. */
  name: string;
  /** The ELF section, e.g. "uprobe/libc.so.6:malloc"; attach plugins parse it. */
  section: string;
  /**
   * Linked 8-byte instructions, little-endian: the program's own function
   * first, then every subprogram it reaches. Calls and function addresses
   * (src 1 / 4) are pc-relative; map references are lddw src 5 (imm = map
   * index) or src 6 (imm = map index, second slot imm = offset in the value).
   */
  insns: Uint8Array;
  /** Byte offset and size of the program's function inside its section. */
  offset: number;
  size: number;
  /** Layout of insns: which function starts at which instruction. The program's own function comes first. */
  functions: LinkedFunction[];
}

export interface LinkedFunction {
  name: string;
  section: string;
  /** First instruction in ProgramSpec.insns. */
  start: number;
  /** Number of instructions. */
  count: number;
}

export interface MapSpec {
  /** Variable name for `.maps` / `maps`; the section name for global data (".data", ".rodata", ".bss", ...). */
  name: string;
  /** Kernel BPF_MAP_TYPE_* value. */
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  /** Kernel BPF_F_* map flags. */
  flags: number;
  /** Initial value of entry 0 of a global data map (zeroes for .bss). */
  initialData?: Uint8Array;
  /** True for .rodata* and .kconfig: programs may not write it, and user space may not once it is loaded (frozen). */
  readonly?: boolean;
  keyType?: BtfTypeInfo;
  valueType?: BtfTypeInfo;
  /** Section the map came from: ".maps", "maps", ".data", ".rodata.str1.1", ... */
  section: string;
  /** Fields of BTF map definitions that few maps use; absent when not given. */
  pinning?: number;
  numaNode?: number;
  mapExtra?: bigint;
}

/** BTF kinds after typedefs and qualifiers are peeled off. */
export type BtfKindName =
  | "void"
  | "int"
  | "ptr"
  | "array"
  | "struct"
  | "union"
  | "enum"
  | "fwd"
  | "float"
  | "func_proto"
  | "datasec";

/**
 * A BTF type described for codecs: typedefs, const, volatile, restrict and
 * type tags are resolved, so `kind` and `size` say how the bytes are laid out
 * while `name` keeps what the source called it ("u32", "struct event").
 */
export interface BtfTypeInfo {
  /** Type id in the object's .BTF; absent for types the loader made up (global data keys). */
  id?: number;
  /** The outermost name: a typedef's name if there is one, "" when anonymous. */
  name: string;
  kind: BtfKindName;
  /** Size in bytes (0 for void, fwd and function prototypes). */
  size: number;
  /** int and enum: signedness. */
  signed?: boolean;
  /** int: marked as char / bool by the compiler. */
  char?: boolean;
  bool?: boolean;
  /** array: element type and count. */
  element?: BtfTypeInfo;
  length?: number;
  /** ptr: the pointee's name only, so self-referencing structs stay finite. */
  target?: string;
  /** struct, union, datasec: members in declaration order. */
  members?: BtfMemberInfo[];
  /** enum: the enumerators. */
  enumValues?: { name: string; value: bigint }[];
}

export interface BtfMemberInfo {
  name: string;
  /** Byte offset of the member (of the containing storage unit for bitfields). */
  offset: number;
  /** Bit offset from the start of the struct (offset * 8 unless a bitfield). */
  bitOffset: number;
  /** Bitfield width; absent for ordinary members. */
  bitSize?: number;
  type: BtfTypeInfo;
}

export interface LoadObjectOptions {
  /** Name for messages and BpfObject.file when a buffer is passed (a path names itself). */
  name?: string;
  /**
   * Values for `__kconfig` externs, added to or overriding bpfhook's table
   * (loader/README.md): `{ CONFIG_HZ: 1000, CONFIG_FOO: "y", CONFIG_NAME: "text" }`.
   */
  kconfig?: Readonly<Record<string, boolean | number | bigint | string>>;
}

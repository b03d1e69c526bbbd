/**
 * One error class for the whole project, thrown by TypeScript and (through
 * native/binding.ts, which hands this class to the addon) by native code.
 * Every code lives in this sorted list; messages start with their context
 * ("[plugin-name] ...", "prog 'on_malloc': ...", "file.bpf.o: section ...").
 */
export const ErrorCodes = [
  "ABI_MISMATCH",
  "AGENT_ERROR",
  "ASM_SYNTAX",
  "ATTACH_FAILED",
  "BAD_ARGUMENT",
  "CLANG_FAILED",
  "CONFIG_INVALID",
  "DUPLICATE_ATTACH_TYPE",
  "ELF_INVALID",
  "ELF_UNSUPPORTED",
  "INJECT_FAILED",
  "MAP_ERROR",
  "NATIVE_NOT_BUILT",
  "NOT_FOUND",
  "PLUGIN_INVALID",
  "PLUGIN_NOT_FOUND",
  "READ_ONLY",
  "REGION_FULL",
  "SCHEMA_INVALID",
  "VERIFIER_REFUSED",
  "VM_COMPILE",
  "VM_FAULT",
  "VM_LOAD",
] as const;

export type ErrorCode = (typeof ErrorCodes)[number];

export interface ErrorDetail {
  /** Negative errno from the native side, as libbpf reports it. */
  errno?: number;
  /** Instruction index, address, symbol, file or section the error is about. */
  pc?: number;
  /** 1-based source line (assembler input, config files). */
  line?: number;
  /** 1-based column (config files). */
  column?: number;
  /** The option or config field at fault ("rodata.target_pid", "objects[0].programs.on_add.attach.symbol"). */
  field?: string;
  /** Kind of run-time fault ("out_of_bounds", "budget", "call_depth", "bad_helper", "helper_arg"). */
  fault?: string;
  address?: bigint;
  symbol?: string;
  file?: string;
  section?: string;
  plugin?: string;
  /** The target process's dlerror() text when an injected dlopen failed. */
  dlerror?: string;
  cause?: unknown;
}

export class BpfhookError extends Error {
  readonly code: ErrorCode;
  readonly errno?: number;
  readonly detail: ErrorDetail;

  constructor(code: ErrorCode, message: string, detail: ErrorDetail = {}) {
    super(message, detail.cause === undefined ? undefined : { cause: detail.cause });
    this.name = "BpfhookError";
    this.code = code;
    this.detail = detail;
    if (detail.errno !== undefined) this.errno = detail.errno;
  }
}

import { BpfhookError, type ErrorCode, type ErrorDetail } from "../errors.js";

/** Where in the object a problem sits; every field is optional. */
export interface Where {
  section?: string;
  /** The function (program or subprogram) the instruction belongs to. */
  func?: string;
  /** The symbol a relocation or definition is about. */
  symbol?: string;
  /** The map a definition is about: printed as "map 'x'" in place of the symbol, so messages name it once. */
  map?: string;
  /** Byte offset inside the section. */
  offset?: number;
}

/**
 * One place that turns loader failures into BpfhookErrors, so every message
 * reads the same way: "x.bpf.o: section 'uprobe/..', function 'f', offset 0x18,
 * symbol 'm': what went wrong".
 */
export class LoadContext {
  constructor(
    /** Printed first in every message: the path, or a caller-chosen name. */
    readonly label: string,
    /** Only set when the object came from a file. */
    readonly file?: string,
  ) {}

  fail(code: ErrorCode, message: string, where: Where = {}): never {
    const parts = [this.label];
    if (where.section !== undefined) parts.push(`section '${where.section}'`);
    if (where.func !== undefined) parts.push(`function '${where.func}'`);
    if (where.offset !== undefined) parts.push(`offset 0x${where.offset.toString(16)}`);
    if (where.map !== undefined) parts.push(`map '${where.map}'`);
    else if (where.symbol !== undefined) parts.push(`symbol '${where.symbol}'`);
    const detail: ErrorDetail = {};
    if (this.file !== undefined) detail.file = this.file;
    if (where.section !== undefined) detail.section = where.section;
    if (where.map !== undefined) detail.symbol = where.map;
    else if (where.symbol !== undefined) detail.symbol = where.symbol;
    else if (where.func !== undefined) detail.symbol = where.func;
    // Instruction index, the unit the VM and verifier speak in (code only).
    if (where.offset !== undefined && where.func !== undefined) detail.pc = Math.floor(where.offset / 8);
    throw new BpfhookError(code, `${parts.join(", ")}: ${message}`, detail);
  }

  /** Shorthand for malformed input. */
  invalid(message: string, where?: Where): never {
    return this.fail("ELF_INVALID", message, where);
  }

  /** Shorthand for well-formed input the loader cannot honour. */
  unsupported(message: string, where?: Where): never {
    return this.fail("ELF_UNSUPPORTED", message, where);
  }
}

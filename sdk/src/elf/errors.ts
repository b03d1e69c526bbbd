/**
 * The one error the ELF layer throws. It is a plain Error with a `code`
 * (the SDK cannot depend on core's BpfhookError); each reader of ELF files
 * turns it into its own error, adding the file's name: the symbol service
 * into a SymbolError, core's loader into a BpfhookError.
 */
export type ElfErrorCode = "ELF_INVALID" | "ELF_UNSUPPORTED";

/** What was being read when the problem showed; every field is optional. */
export interface ElfProblemDetail {
  /** The structure or field ("section headers", "st_value", ".dynsym"). */
  readonly what?: string;
  /** Where the read started, in the file or in the region being decoded. */
  readonly offset?: number;
  /** How many bytes the read wanted. */
  readonly length?: number;
}

export class ElfFormatError extends Error {
  override readonly name = "ElfFormatError";

  constructor(
    /** ELF_INVALID: malformed or truncated; ELF_UNSUPPORTED: well formed but not what the reader handles. */
    readonly code: ElfErrorCode,
    /** Says what is wrong, without the file's name (callers know it and add it). */
    message: string,
    readonly detail: ElfProblemDetail = {},
  ) {
    super(message);
  }
}

/**
 * Errors of the symbol service. The SDK cannot depend on core's BpfhookError,
 * so these are plain Errors carrying the same `code` strings (a subset of
 * core's sorted ErrorCodes list) and the facts a caller may want to show.
 * Core's plugin wrapper keeps them as the `cause` of the error it rethrows.
 */
export type SymbolErrorCode = "BAD_ARGUMENT" | "ELF_INVALID" | "ELF_UNSUPPORTED" | "NOT_FOUND";

export interface SymbolErrorDetail {
  readonly pid?: number;
  readonly module?: string;
  readonly file?: string;
  readonly symbol?: string;
  readonly address?: bigint;
}

export interface SymbolError extends Error {
  readonly code: SymbolErrorCode;
  readonly detail: SymbolErrorDetail;
}

export function symbolError(code: SymbolErrorCode, message: string, detail: SymbolErrorDetail = {}): SymbolError {
  return Object.assign(new Error(message), { code, detail });
}

/** True for an error made by symbolError() (or anything with the same shape). */
export function isSymbolError(err: unknown): err is SymbolError {
  return err instanceof Error && typeof (err as { code?: unknown }).code === "string";
}

/** "0x7f12ab" for messages; addresses are always shown in hex. */
export function hex(v: bigint | number): string {
  return `0x${v.toString(16)}`;
}

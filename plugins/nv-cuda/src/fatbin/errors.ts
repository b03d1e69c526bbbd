/** Errors of the fat binary reader: untrusted bytes, so every refusal names the entry and the field. */
export class FatbinError extends Error {
  readonly code: "FATBIN_INVALID" | "FATBIN_UNSUPPORTED";
  constructor(code: "FATBIN_INVALID" | "FATBIN_UNSUPPORTED", message: string) {
    super(message);
    this.name = "FatbinError";
    this.code = code;
  }
}

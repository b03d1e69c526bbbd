/** Why a path cannot be proven safe: thrown from deep in the checks, caught once by verifyProgram. */
export class Refusal extends Error {
  constructor(
    readonly pc: number,
    readonly reason: string,
    /** The register the reason is about (0-10), when there is one. */
    readonly register?: number,
  ) {
    super(reason);
  }
}

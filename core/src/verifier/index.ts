/**
 * The verifier (issue 11): proves at load that a program cannot crash, hang
 * or read outside its rights, so that fast mode runs it with no run-time
 * checks. See types.ts for the contract.
 */
export * from "./types.js";
export { MapType, standardHelpers, STANDARD_HELPER_IDS } from "./helpers.js";
export { verifyProgram } from "./verify.js";

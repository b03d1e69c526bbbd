/** The differential fuzzer (issue 11): generator, mutator, runner and driver. See docs/FUZZING.md. */
export { Generator, UB_TAGS, UNSAFE_TAGS, type DefectTag, type FuzzProgram } from "./generator.js";
export { mutate } from "./mutator.js";
export { Rng } from "./rng.js";
export { streamProgram, readCorpus, type StreamProgram } from "./stream.js";
export { findUndefinedBehaviour, type UndefinedUse } from "./definedness.js";
export { checkProgram, FuzzHost, verifierIsPlaceholder, CHECKED_BUDGET, type ProgramOutcome, type RunResult } from "./exec.js";
export { runFuzz, replayProgram, type Failure, type FuzzOptions, type FuzzSummary } from "./driver.js";
export { FUZZ_CONTEXT, FUZZ_MAPS } from "./env.js";

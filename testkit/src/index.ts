/**
 * @bpfhook/testkit: what a plugin's tests need. Throwaway runtimes with the
 * plugin under test ({@link createTestRuntime}, {@link withRuntime}),
 * programs from eBPF C, assembly or objects ({@link loadProgram}), map
 * reads, and {@link runContractTests}, the cases every plugin must pass.
 *
 * @packageDocumentation
 */
export { createTestRuntime, withRuntime, registerPlugin, isPluginDirectory, type PluginRef, type TestRuntimeOptions } from "./runtime.js";
export {
  clangMissing,
  compileC,
  COUNTER_MAP,
  counterProgram,
  loadProgram,
  readMap,
  removeCompiled,
  requireClang,
  type AsmMap,
  type AsmSource,
  type CSource,
  type LoadedProgram,
  type ObjectSource,
  type ProgramSource,
  type SkippableContext,
} from "./program.js";
export { runContractTests, type AgentContract, type ContractOptions, type InvalidData, type Skip, type ThreadedTrigger } from "./contract.js";

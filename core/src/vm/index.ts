/** The eBPF VM: interpreter and x86-64 JIT behind one class. */
export { EbpfVm, loadProgram, nativeHelperNames } from "./vm.js";
export { VM_BACKENDS, type VmBackend, type VmOptions } from "./options.js";

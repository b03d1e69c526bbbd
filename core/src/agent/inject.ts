/**
 * Loading a shared library into a running process (the first piece of agent
 * mode, `bpfhook attach -p PID`): the native ptrace injector
 * (core/native/inject, see its README) calls the target's own dlopen.
 */
import path from "node:path";
import { native } from "../native/binding.js";

export interface InjectOptions {
  /** Bound on each wait for the target (stop, dlopen, dlerror). Default 5000 ms. */
  timeoutMs?: number;
  /**
   * Skip the checks that the library exists in the target's file system view
   * and is not already mapped: the target's dlopen decides. Default false.
   */
  noPathCheck?: boolean;
  /**
   * After loading (or finding the library loaded already), call this
   * exported function of the library in the target as `int fn(const char *)`
   * on the thread held with ptrace (it must return quickly), e.g.
   * "bh_agent_attach_region" of the agent. Resolved from the library's
   * .dynsym; INJECT_FAILED -ENOENT if it exports no such function.
   */
  callSymbol?: string;
  /** The string argument of callSymbol (copied onto the target's stack); absent: NULL. */
  callArg?: string;
}

export interface InjectResult {
  /** The handle the target's dlopen returned (0n when reused). */
  handle: bigint;
  /** Lowest address the library is mapped at in the target (0n if unknown). */
  base: bigint;
  /** The library (same inode) was already loaded: nothing was injected. */
  reused: boolean;
  /** The target's libc had no dlopen (glibc < 2.34): __libc_dlopen_mode was used. */
  usedLibcDlopenMode: boolean;
  /** callSymbol was called. */
  called: boolean;
  /** Its int result (0 when not called). */
  callRet: number;
}

/**
 * Loads `library` into process `pid` with dlopen(RTLD_NOW), run by the
 * target's main thread while it is held with ptrace; its registers are
 * restored after. Synchronous: blocks for the injection (bounded by
 * timeoutMs per wait). A relative path is resolved against this process's
 * cwd. Throws BpfhookError INJECT_FAILED with errno: -ESRCH (no such
 * process), -EPERM (traced already, another user, Yama; the message says
 * which), -ENOENT (no such file), -ENOEXEC (the target's dlopen failed:
 * detail.dlerror has its dlerror text), -ENOSYS (no dlopen in the target's
 * libc), -ETIMEDOUT.
 */
export function injectLibrary(pid: number, library: string, options: InjectOptions = {}): InjectResult {
  const file = options.noPathCheck ? library : path.resolve(library);
  return native().injectDlopen(pid, file, options);
}

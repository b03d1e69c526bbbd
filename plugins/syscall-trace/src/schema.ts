/**
 * Private data: which call, which side of it, and whether programs may
 * override its result. A config entry ({ type: "syscall_trace", ... }) names
 * the call as `syscall` (a name, or "all"); parseConfig turns it into `nr`.
 */
import { z } from "zod";
import { SYSCALL_MAX_NR } from "./encode-constants.js";

export const syscallTraceSchema = z
  .object({
    direction: z.enum(["enter", "exit"]),
    /** The x86-64 number, or "all" (raw_syscalls). */
    nr: z.union([z.number().int().min(0).max(SYSCALL_MAX_NR - 1), z.literal("all")]),
    /**
     * "allow" (default): bpf_override_return / bpf_set_retval are honoured
     * (enter: the call is skipped and returns the value; exit: the value
     * replaces the result). "deny": they return -EPERM and change nothing.
     */
    override: z.enum(["allow", "deny"]).default("allow"),
  })
  .strict();

export type SyscallTracePrivateData = z.infer<typeof syscallTraceSchema>;

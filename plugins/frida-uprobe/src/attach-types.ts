/**
 * The four attach types this plugin serves and the section prefixes that
 * select them. Programs get the kernel's struct pt_regs (168 bytes) as
 * context for all four.
 *
 *   uprobe/<target>            uprobe (6); libbpf's sleepable "uprobe.s" too
 *   uretprobe/<target>         uretprobe (7); "uretprobe.s" too
 *   uprobe.override/<target>   uprobe_override (1008); "uoverride" too
 *   ureplace/<target>          ureplace (1009)
 *
 * libbpf has no section for override or replacement (the kernel overrides
 * only in kprobes), so these two are ours: "uprobe.override" follows libbpf's
 * "<kind>.<variant>" naming ("uprobe.s", "uprobe.multi"), "ureplace" is
 * bpftime's type name. Sleepability means nothing in user space; the ".s"
 * forms are accepted so libbpf programs load unchanged.
 */
import { AttachTypeId } from "@bpfhook/sdk";
import type { AttachTypeSpec, ContextLayout, RefusedHelper } from "@bpfhook/sdk";

/** sizeof(struct pt_regs) on x86-64. */
export const PT_REGS_SIZE = 168;

/**
 * What the verifier lets a program do with its context: read all of struct
 * pt_regs, write none of it (the kernel's uprobes are read-only too; the
 * return value of an override goes through bpf_override_return or r0).
 */
export const PT_REGS_LAYOUT: ContextLayout = Object.freeze({
  name: "pt_regs",
  size: PT_REGS_SIZE,
  readable: Object.freeze([{ offset: 0, size: PT_REGS_SIZE }]),
  writable: Object.freeze([]),
});

/** bpf_override_return: the kernel refuses it outside override-capable probes. */
const OVERRIDE_RETURN = 58;

export const UPROBE: AttachTypeSpec = {
  id: AttachTypeId.UPROBE,
  name: "uprobe",
  sectionPrefixes: ["uprobe", "uprobe.s"],
  contextSize: PT_REGS_SIZE,
  context: "pt_regs",
  contextLayout: PT_REGS_LAYOUT,
  refusedHelpers: [
    {
      id: OVERRIDE_RETURN,
      name: "bpf_override_return",
      reason: "a uprobe only observes; put the program in a 'uprobe.override/' section (attach type uprobe_override)",
    } satisfies RefusedHelper,
  ],
};

export const URETPROBE: AttachTypeSpec = {
  id: AttachTypeId.URETPROBE,
  name: "uretprobe",
  sectionPrefixes: ["uretprobe", "uretprobe.s"],
  contextSize: PT_REGS_SIZE,
  context: "pt_regs",
  contextLayout: PT_REGS_LAYOUT,
};

export const UPROBE_OVERRIDE: AttachTypeSpec = {
  id: AttachTypeId.UPROBE_OVERRIDE,
  name: "uprobe_override",
  sectionPrefixes: ["uprobe.override", "uoverride"],
  contextSize: PT_REGS_SIZE,
  context: "pt_regs",
  contextLayout: PT_REGS_LAYOUT,
};

export const UREPLACE: AttachTypeSpec = {
  id: AttachTypeId.UREPLACE,
  name: "ureplace",
  sectionPrefixes: ["ureplace"],
  contextSize: PT_REGS_SIZE,
  context: "pt_regs",
  contextLayout: PT_REGS_LAYOUT,
  refusedHelpers: [
    {
      id: OVERRIDE_RETURN,
      name: "bpf_override_return",
      reason: "a ureplace program's r0 is already the return value; return it instead",
    },
  ],
};

export const UPROBE_ATTACH_TYPES: readonly AttachTypeSpec[] = [UPROBE, URETPROBE, UPROBE_OVERRIDE, UREPLACE];

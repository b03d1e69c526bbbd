/**
 * The values `__kconfig` externs read: libbpf's own externs and a fixed
 * table of CONFIG_* options that describe bpfhook's user-space runtime (not
 * the host kernel: programs run in user space here, whatever the kernel was
 * built with). The table is documented in loader/README.md; the `kconfig`
 * load option adds to it or overrides it, as libbpf's open option does.
 */
import { release } from "node:os";

/**
 * A kconfig value: `true` / "y" (built in), `false` / "n" (not set), "m"
 * (module), a number or bigint (int options), or any other string (string
 * options, for `char NAME[N]` externs).
 */
export type KconfigValue = boolean | number | bigint | string;

/** KERNEL_VERSION(a, b, c) as linux/version.h and libbpf encode it (patch capped at 255). */
export function kernelVersionCode(major: number, minor: number, patch: number): number {
  return major * 65536 + minor * 256 + Math.min(patch, 255);
}

/**
 * LINUX_KERNEL_VERSION from uname's release ("6.18.44-fc" -> 6.18.44), as
 * libbpf's get_kernel_version reads it; 0 when the release does not start
 * with numbers (libbpf's answer too).
 */
export function linuxKernelVersion(rel: string = release()): number {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(rel);
  if (m === null) return 0;
  return kernelVersionCode(Number(m[1]), Number(m[2]), Number(m[3] ?? 0));
}

/** CONFIG_* options bpfhook answers, and why each has its value. */
export const KCONFIG_TABLE: Readonly<Record<string, KconfigValue>> = {
  // eBPF itself: programs, maps and the JIT are there.
  CONFIG_BPF: "y",
  CONFIG_BPF_SYSCALL: "y",
  CONFIG_BPF_JIT: "y",
  CONFIG_HAVE_EBPF_JIT: "y",
  CONFIG_BPF_EVENTS: "y",
  // Attach points bpfhook serves: uprobes (frida-uprobe plugin).
  CONFIG_UPROBES: "y",
  CONFIG_UPROBE_EVENTS: "y",
  // What user space cannot have: kernel probes, LSM and networking hooks.
  CONFIG_KPROBES: "n",
  CONFIG_KPROBE_EVENTS: "n",
  CONFIG_BPF_LSM: "n",
  CONFIG_NET: "n",
  // Machine facts of the process that runs the programs.
  CONFIG_64BIT: "y",
  CONFIG_SMP: "y",
  CONFIG_X86_64: process.arch === "x64" ? "y" : "n",
  CONFIG_ARM64: process.arch === "arm64" ? "y" : "n",
  CONFIG_CPU_BIG_ENDIAN: "n",
  // The common distribution tick rate; bpfhook has no jiffies of its own.
  CONFIG_HZ: 250,
  CONFIG_PAGE_SHIFT: 12,
};

/** The value of `name`, or undefined when nothing defines it. */
export function kconfigValue(name: string, overrides?: Readonly<Record<string, KconfigValue>>): KconfigValue | undefined {
  if (overrides !== undefined && Object.hasOwn(overrides, name)) return overrides[name];
  switch (name) {
    case "LINUX_KERNEL_VERSION":
      return linuxKernelVersion();
    // bpf_get_attach_cookie works: every attach takes a cookie.
    case "LINUX_HAS_BPF_COOKIE":
      return true;
  }
  return Object.hasOwn(KCONFIG_TABLE, name) ? KCONFIG_TABLE[name] : undefined;
}

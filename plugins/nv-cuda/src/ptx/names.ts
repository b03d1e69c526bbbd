/**
 * Kernel names: the mangled name a PTX `.entry` has, and the readable base
 * name `cuda/<kernel>` sections may use instead. The base name is read from
 * the Itanium mangling without a full demangler: `_Z9vectorAddPKfS0_Pfi` is
 * `vectorAdd`, `_ZN2ns6kernelEPf` is `ns::kernel`, template arguments are
 * dropped (`_Z6kernelIfEvPT_i` is `kernel`). A name that is not mangled
 * (extern "C") is its own base name.
 */
export function kernelBaseName(mangled: string): string {
  if (!mangled.startsWith("_Z")) return mangled;
  let i = 2;
  const readId = (): string | undefined => {
    const m = /^(\d+)/.exec(mangled.slice(i));
    if (!m) return undefined;
    const len = Number(m[1]);
    i += m[1]!.length;
    const id = mangled.slice(i, i + len);
    if (id.length !== len) return undefined;
    i += len;
    return id;
  };
  const skipTemplateArgs = (): void => {
    // I ... E, nested: skip by depth (good enough for a base name)
    if (mangled[i] !== "I") return;
    let depth = 0;
    for (; i < mangled.length; i++) {
      if (mangled[i] === "I") depth++;
      else if (mangled[i] === "E" && --depth === 0) {
        i++;
        return;
      }
    }
  };
  if (mangled[i] === "N") {
    i++;
    while (mangled[i] === "K" || mangled[i] === "V" || mangled[i] === "r") i++;
    const parts: string[] = [];
    while (i < mangled.length && mangled[i] !== "E") {
      const id = readId();
      if (id === undefined) return mangled;
      parts.push(id);
      skipTemplateArgs();
    }
    return parts.length > 0 ? parts.join("::") : mangled;
  }
  return readId() ?? mangled;
}

/** `*` and `?` globs, anchored. */
export function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${body}$`);
}

/** Whether a `cuda/<pattern>` selects the kernel: the mangled name or the base name, exactly or by glob. */
export function kernelMatches(pattern: string, mangled: string): boolean {
  if (pattern === mangled) return true;
  const base = kernelBaseName(mangled);
  if (pattern === base) return true;
  if (!/[*?]/.test(pattern)) return false;
  const re = globToRegExp(pattern);
  return re.test(mangled) || re.test(base);
}

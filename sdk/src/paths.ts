import path from "node:path";

/** The folder holding bpfhook/plugin.h, for a plugin's native build. */
export function includeDir(): string {
  return path.resolve(__dirname, "..", "include");
}

/**
 * Where the bpf_conformance suite lives: $BPFHOOK_CONFORMANCE_DIR, else
 * shared/conformance/bpf_conformance inside the repository or beside it.
 * Undefined when absent, so tests can skip with a reason.
 */
import { existsSync } from "node:fs";
import path from "node:path";

// This file runs from test/dist/helpers/.
const repoRoot = path.resolve(__dirname, "..", "..", "..");

export function conformanceDir(): string | undefined {
  const candidates = [
    process.env.BPFHOOK_CONFORMANCE_DIR,
    path.join(repoRoot, "shared", "conformance", "bpf_conformance"),
    path.join(repoRoot, "..", "shared", "conformance", "bpf_conformance"),
  ];
  return candidates.find((p): p is string => p !== undefined && existsSync(p));
}

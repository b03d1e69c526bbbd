/**
 * Checks that an object handed to us as a plugin fits the SDK contract, so a
 * malformed third-party package is refused with a reason instead of failing
 * later in the middle of an attach.
 */
import { z } from "zod";
import type { AttachPlugin } from "@bpfhook/sdk";
import { BpfhookError } from "../errors.js";

const attachTypeShape = z.object({
  id: z.number().int().positive(),
  name: z.string().regex(/^[a-z][a-z0-9_-]*$/, "lower-case name of letters, digits, '-' and '_'"),
  sectionPrefixes: z.array(z.string().min(1).regex(/^[^/]+(\/[^/]+)*$/, "prefix without leading or trailing '/'")),
  contextSize: z.number().int().nonnegative().optional(),
});

const pluginShape = z.object({
  name: z.string().min(1),
  version: z.string().optional(),
  abiVersion: z.number().int().positive(),
  attachTypes: z.array(attachTypeShape).min(1),
  privateDataSchema: z.custom<z.ZodType>(
    (v) => typeof v === "object" && v !== null && typeof (v as { safeParse?: unknown }).safeParse === "function",
    "must be a zod schema",
  ),
  nativeLibrary: z.string().min(1),
  nativeGlobalSymbols: z.string().min(1, "say why the native piece needs RTLD_GLOBAL").optional(),
  parseSection: z.custom<(...a: unknown[]) => unknown>((v) => typeof v === "function", "must be a function"),
  encode: z.custom<(...a: unknown[]) => unknown>((v) => typeof v === "function", "must be a function"),
});

export function checkPluginShape(candidate: unknown, origin: string): AttachPlugin {
  const result = pluginShape.safeParse(candidate);
  if (!result.success) {
    const name =
      typeof candidate === "object" && candidate !== null && typeof (candidate as { name?: unknown }).name === "string"
        ? (candidate as { name: string }).name
        : origin;
    const issues = result.error.issues.map((i) => `${i.path.join(".") || "(plugin)"}: ${i.message}`).join("; ");
    throw new BpfhookError("PLUGIN_INVALID", `[${name}] not a valid bpfhook plugin (from ${origin}): ${issues}`, {
      plugin: name,
    });
  }
  return candidate as AttachPlugin;
}

/**
 * Checks that an object handed to us as a plugin fits the SDK contract, so a
 * malformed third-party package is refused with a reason instead of failing
 * later in the middle of an attach.
 */
import { z } from "zod";
import type { ArgKind, AttachPlugin, RetKind } from "@bpfhook/sdk";
import { BpfhookError } from "../errors.js";

const rangeShape = z.object({ offset: z.number().int().nonnegative(), size: z.number().int().nonnegative() });

/** A context layout the verifier can trust: every range inside the context. */
const contextLayoutShape = z
  .object({
    name: z.string().min(1),
    size: z.number().int().nonnegative().max(1 << 20),
    readable: z.array(rangeShape).optional(),
    writable: z.array(rangeShape).optional(),
    variableOffsets: z.boolean().optional(),
  })
  .refine((c) => [...(c.readable ?? []), ...(c.writable ?? [])].every((r) => r.offset + r.size <= c.size), {
    message: "every readable and writable range must lie inside [0, size)",
  });

const attachTypeShape = z.object({
  id: z.number().int().positive(),
  name: z.string().regex(/^[a-z][a-z0-9_-]*$/, "lower-case name of letters, digits, '-' and '_'"),
  sectionPrefixes: z.array(z.string().min(1).regex(/^[^/]+(\/[^/]+)*$/, "prefix without leading or trailing '/'")),
  sharedPrefixes: z.array(z.string().min(1).regex(/^[^/]+(\/[^/]+)*$/, "prefix without leading or trailing '/'")).optional(),
  contextSize: z.number().int().nonnegative().optional(),
  contextLayout: contextLayoutShape.optional(),
});

const ARG_KINDS = [
  "none", "anything", "ptr_to_mem", "ptr_to_mem_or_null", "ptr_to_uninit_mem", "const_size", "const_size_or_zero",
  "ptr_to_long", "const_map_ptr", "ptr_to_map_key", "ptr_to_map_value", "ptr_to_uninit_map_value", "ptr_to_ctx",
  "ptr_to_const_str", "ptr_to_ringbuf_mem", "ptr_to_func", "ptr_to_stack_or_null",
] as const satisfies readonly ArgKind[];

/** A declared helper signature (HelperDecl.signature): the verifier believes it, so its shape is checked here. */
const signatureShape = z.object({
  id: z.number().int().optional(),
  name: z.string().min(1).optional(),
  args: z.array(z.enum(ARG_KINDS)).max(5),
  mapTypes: z.array(z.number().int().positive()).optional(),
  ret: z.enum(["scalar", "map_value_or_null", "ringbuf_mem_or_null"] as const satisfies readonly RetKind[]),
  retSizeArg: z.number().int().min(0).max(4).optional(),
  releasesRecord: z.boolean().optional(),
  callback: z.enum(["loop", "for_each_map_elem"]).optional(),
  tailCall: z.boolean().optional(),
});

const helperShape = z
  .object({
    id: z.number().int().positive(),
    name: z.string().min(1),
    description: z.string().optional(),
    signature: signatureShape.optional(),
  })
  .refine((h) => h.signature?.id === undefined || h.signature.id === h.id, { message: "signature.id differs from the helper's id" });

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
  helpers: z.array(helperShape).optional(),
  parseSection: z.custom<(...a: unknown[]) => unknown>((v) => typeof v === "function", "must be a function"),
  encode: z.custom<(...a: unknown[]) => unknown>((v) => typeof v === "function", "must be a function"),
  contextLayoutFor: z.custom<(...a: unknown[]) => unknown>((v) => typeof v === "function", "must be a function").optional(),
  claimsSection: z.custom<(...a: unknown[]) => unknown>((v) => typeof v === "function", "must be a function").optional(),
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

/**
 * The config file's schema (zod, strict: an unknown key is an error, so a
 * misspelt field is never silently ignored). docs/CONFIG.md documents every
 * field; keep the two in step.
 */
import { z } from "zod";

/** A u64 the way YAML and JSON can write one: a safe integer, or a decimal / hex string. */
const u64 = z.union([
  z.number().int().nonnegative(),
  z.string().regex(/^(0x[0-9a-fA-F]+|[0-9]+)$/, 'expected an integer or a string like "0x1f"'),
]);

/** A `.rodata` constant: checked against the variable's BTF type at load. */
const rodataValue = z.union([
  z.boolean(),
  z.number(),
  z.string(),
]);

/** Explicit attach: the attach type (name or id) plus the plugin's own fields, checked by its schema. */
const attachSchema = z.looseObject({ type: z.union([z.string().min(1), z.number().int().nonnegative()]) });

const programSchema = z.strictObject({
  /**
   * false: leave the program unattached. An object: attach with this type and
   * private data instead of by section. Absent: by section.
   */
  attach: z.union([z.literal(false), attachSchema]).optional(),
  /** bpf_get_attach_cookie() value. */
  cookie: u64.optional(),
  /** Attach although the section states another context than the type's. */
  force: z.boolean().optional(),
});

const mapSchema = z.strictObject({
  maxEntries: z.number().int().min(1).max(0xffffffff),
});

const objectSchema = z.strictObject({
  /** The .bpf.o, relative to the config file's directory. */
  path: z.string().min(1),
  /** Name to find it by in the result (default: the file name without .o / .bpf.o). */
  name: z.string().min(1).optional(),
  rodata: z.record(z.string().min(1), rodataValue).optional(),
  maps: z.record(z.string().min(1), mapSchema).optional(),
  kconfig: z.record(z.string().min(1), z.union([z.boolean(), z.number(), z.string()])).optional(),
  programs: z.record(z.string().min(1), programSchema).optional(),
});

const regionSchema = z.strictObject({
  size: z.number().int().positive().optional(),
  maxMaps: z.number().int().min(1).max(65536).optional(),
  cleanStale: z.boolean().optional(),
});

/**
 * What a front end (the CLI's `bpfhook run -c`) shows while programs run.
 * The embedding API validates and returns it; it does not print anything.
 */
const outputSchema = z.strictObject({
  /** Maps to print ("object.map" or "map" when one object has it); default: every map. */
  maps: z.array(z.string().min(1)).optional(),
  /** Milliseconds between prints; 0: only at exit. */
  intervalMs: z.number().int().nonnegative().optional(),
  format: z.enum(["text", "json"]).optional(),
  /** Print trace_printk output (bpf_printk). */
  tracePrintk: z.boolean().optional(),
});

/** Agent mode (`bpfhook run` / `bpfhook attach`): how the agent in the target behaves. */
const agentSchema = z.strictObject({
  /** Keep the probes attached in the target when the controller dies (default: detach them). */
  keepProbesOnExit: z.boolean().optional(),
  /** How long a target started by `bpfhook run` waits before main for its programs (ms, default 5000). */
  startTimeoutMs: z.number().int().min(1).max(600000).optional(),
  /** Where the agent logs in the target: a file path, or "stderr" (default: to the controller). */
  log: z.string().min(1).optional(),
});

export const configSchema = z.strictObject({
  /** Plugin packages by npm name, resolved from the config file's directory. */
  plugins: z.array(z.string().min(1)).optional(),
  region: regionSchema.optional(),
  /** strict (default): programs proven safe at load; checked: run-time checks; off: trusted (docs/SECURITY.md). */
  verifier: z.enum(["strict", "checked", "off"]).optional(),
  checked: z.boolean().optional(),
  budget: z.number().int().nonnegative().optional(),
  backend: z.enum(["jit", "interpreter"]).optional(),
  objects: z.array(objectSchema).min(1),
  output: outputSchema.optional(),
  agent: agentSchema.optional(),
});

export type BpfhookConfig = z.infer<typeof configSchema>;
export type ConfigObject = z.infer<typeof objectSchema>;
export type ConfigProgram = z.infer<typeof programSchema>;
export type ConfigOutput = z.infer<typeof outputSchema>;
export type ConfigAgent = z.infer<typeof agentSchema>;

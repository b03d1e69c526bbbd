/**
 * The simple plugin: custom event sources with one callback each. A program
 * in section `simple/<source>` (or a config entry `{ type: "simple", source }`)
 * attaches to the source named <source>; firing the source, from TypeScript
 * (`trigger()` below) or from native code (`bh_simple_trigger` in
 * native/include/bpfhook/simple.h), runs the attached programs with the
 * trigger's bytes as context.
 */
import path from "node:path";
import { z } from "zod";
import { AttachTypeId, definePlugin, PLUGIN_ABI_VERSION, StructWriter } from "@bpfhook/sdk";
import type { AttachTypeSpec, ContextLayout, NativeCaller } from "@bpfhook/sdk";

const schema = z.object({
  source: z
    .string()
    .min(1, "source name must not be empty")
    .max(255)
    .regex(/^[^\0]+$/, "source name must not contain NUL"),
});
export type SimplePrivateData = z.infer<typeof schema>;

/**
 * Bytes of context a program may read and write (BH_SIMPLE_CONTEXT_SIZE in
 * simple.h): the verifier proves programs against this many; a trigger
 * with fewer bytes runs them on a zero-padded copy, a longer one is fine
 * (verified programs touch no byte past this size).
 */
export const SIMPLE_CONTEXT_SIZE = 4096;

const SIMPLE_LAYOUT: ContextLayout = Object.freeze({
  name: "simple event",
  size: SIMPLE_CONTEXT_SIZE,
  readable: Object.freeze([{ offset: 0, size: SIMPLE_CONTEXT_SIZE }]),
  writable: Object.freeze([{ offset: 0, size: SIMPLE_CONTEXT_SIZE }]),
  // The event's bytes: a buffer a program may index.
  variableOffsets: true,
});

export const SIMPLE_TYPE: AttachTypeSpec = Object.freeze({
  id: AttachTypeId.SIMPLE,
  name: "simple",
  sectionPrefixes: Object.freeze(["simple"]),
  contextLayout: SIMPLE_LAYOUT,
});

export const plugin = definePlugin<SimplePrivateData>({
  name: "simple",
  version: "0.1.0",
  abiVersion: PLUGIN_ABI_VERSION,
  attachTypes: [SIMPLE_TYPE],
  privateDataSchema: schema,
  nativeLibrary: path.resolve(__dirname, "..", "build", "libbpfhook_simple.so"),
  nativeGlobalSymbols: "native event sources find bh_simple_trigger with dlsym(RTLD_DEFAULT, ...)",
  parseSection: (_type, rest) => ({ source: rest }),
  parseConfig: (_type, entry) => ({ source: entry.source }),
  encode: ({ data }) => new StructWriter().cstring(data.source).finish(),
  describe: ({ data }) => `simple source '${data.source}'`,
});

export default plugin;

export interface TriggerResult {
  /** Programs run (0 when nothing is attached to the source). */
  readonly count: number;
  /** The last program's r0. */
  readonly result: bigint;
  /** The context after the programs ran (they may write it). */
  readonly context: Buffer;
}

/**
 * Fires `source` from TypeScript: runs its programs with `context` as their
 * context (a copy; the programs' writes come back in `result.context`).
 */
export function trigger(host: NativeCaller, source: string, context: Uint8Array = new Uint8Array()): TriggerResult {
  schema.parse({ source });
  const input = Buffer.concat([Buffer.from(`${source}\0`, "utf8"), Buffer.from(context)]);
  const { rc, out } = host.callNative("simple", "trigger", input, 8 + context.length);
  return { count: rc, result: out.readBigUInt64LE(0), context: out.subarray(8) };
}

/**
 * The private data's schema. Three ways to name a target, in config or
 * through parseSection:
 *
 *   { module, symbol, offset? }   a function (offset: bytes into it)
 *   { module, offset }            a file offset in the module
 *   { address }                   an absolute address in the process
 *
 * Numbers may be JS integers, bigints, or strings ("0x98930", "16"), since
 * YAML and JSON configs can't hold 64-bit values. `ifunc` says what to hook
 * when the symbol is an IFUNC (glibc's strlen): the implementation the
 * resolver picks for this CPU (default, what callers really run) or the
 * resolver function itself.
 *
 * After prepare() the data also holds `resolved`, which the schema does not
 * accept from users: it is always computed.
 */
import { z } from "zod";

const MAX_U64 = (1n << 64n) - 1n;

function u64(what: string) {
  const error = `${what} must be a non-negative integer: a number, a bigint, or a string like "0x1f" or "31"`;
  // The message goes on each branch too: zod reports the failing branch's
  // own issue when the input had that branch's type (a string that is no number).
  return z
    .union(
      [
        z.bigint({ error }),
        z.number({ error }).int({ error }),
        z.string({ error }).regex(/^(0x[0-9a-fA-F]+|[0-9]+)$/, { error }),
      ],
      { error },
    )
    .transform((v) => BigInt(v))
    .refine((v) => v >= 0n && v <= MAX_U64, `${what} must be between 0 and 2^64-1`);
}

const target = z
  .strictObject({
    module: z
      .string()
      .max(4095, "module is longer than a path may be")
      .refine((s) => !s.includes("\0"), "module must not contain NUL")
      .optional(),
    symbol: z
      .string()
      .min(1, "symbol must not be empty")
      .max(4095)
      .regex(/^[^\s\0:+]+$/, "symbol must be one ELF symbol name (no spaces, ':' or '+'); put an offset in 'offset'")
      .optional(),
    offset: u64("offset").optional(),
    address: u64("address").optional(),
    ifunc: z.enum(["implementation", "resolver"]).default("implementation"),
  })
  .superRefine((d, ctx) => {
    if (d.address !== undefined) {
      for (const key of ["module", "symbol", "offset"] as const) {
        if (d[key] !== undefined) {
          const message = `'${key}' can't go with 'address': an address is already absolute`;
          ctx.addIssue({ code: "custom", path: [key], message });
        }
      }
      if (d.address === 0n) ctx.addIssue({ code: "custom", path: ["address"], message: "address must not be 0" });
      return;
    }
    if (d.module === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["module"],
        message: "module is required: give {module, symbol[, offset]}, {module, offset} or {address}",
      });
    } else if (d.symbol === undefined && d.offset === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["symbol"],
        message: `module '${d.module}' needs a symbol (optionally with an offset) or a file offset`,
      });
    }
  });

export const uprobeTargetSchema = target;

/** A validated target, before prepare(). */
export type UprobeTarget = z.output<typeof target>;

/** What prepare() found: the address to hook and how to describe it. */
export interface ResolvedTarget {
  /** Absolute address in the target process (an IFUNC resolver when flags say so). */
  readonly address: bigint;
  /**
   * Link-time address in `modulePath` (address - load bias); what is encoded
   * when flags hold MODULE_RELATIVE. Absent for anonymous memory.
   */
  readonly vaddr?: bigint;
  /** BH_UPROBE_F_* (see encode.ts). */
  readonly flags: number;
  /** "module:symbol[+0xoff]", "module:0xfileoff" or "0xaddress (module:0xfileoff)". */
  readonly description: string;
  readonly modulePath?: string;
  readonly kind: "func" | "ifunc" | "offset" | "address";
  /** Bytes into the function (symbol+offset); 0 at its entry or when not known. */
  readonly funcOffset?: bigint;
  /** The symbol's size, so the engine can decode the whole function; 0 if unknown. */
  readonly funcSize?: bigint;
}

export interface UprobePrivateData extends UprobeTarget {
  readonly resolved?: ResolvedTarget;
}

/**
 * BPF_MAP_TYPE_PROG_ARRAY: the jump table of bpf_tail_call. Its slots hold
 * programs loaded into this process, so it is not in the shared region like
 * the other maps: the native runtime owns it, and it lives until the runtime
 * closes. In agent mode the region's agent area mirrors every slot as a
 * program id, which the agent in the target resolves to its own copy.
 *
 *   const jmp = obj.map<ProgArray>("jmp_table");
 *   jmp.set(0, obj.program("handle_read"));
 *   jmp.get(0);     // "handle_read"
 *   jmp.delete(0);  // a tail call to slot 0 now falls through
 *
 * A program put into a slot stays loaded until the runtime closes, whatever
 * happens to the slot later (a tail call may still be running it).
 * Unloading an object (LoadedObject.close) empties every slot that holds one
 * of its programs, in every array of the runtime, before its maps are freed;
 * a tail call already inside such a program on another thread at that moment
 * is not waited for (unload while those callers are quiet).
 */
import { BpfhookError } from "../errors.js";
import { Errno, mapError } from "../maps/errors.js";
import type { NativeProgArray } from "../native/addon-types.js";
import type { Program } from "./program.js";

export class ProgArray {
  /** BPF_MAP_TYPE_PROG_ARRAY. */
  readonly type = 3;
  readonly typeName = "prog_array";
  readonly keySize = 4;
  readonly valueSize = 4;
  #native: NativeProgArray | undefined;
  /** What set() put in each slot, so that unloading an object can empty the slots of its programs. */
  readonly #slots = new Map<number, Program>();

  constructor(
    /** The map's name in its object. */
    readonly name: string,
    native: NativeProgArray,
    /** Agent mode: told of every slot change (undefined: emptied). */
    private readonly mirror?: (slot: number, program: Program | undefined) => void,
  ) {
    this.#native = native;
  }

  get maxEntries(): number {
    return this.native.maxEntries;
  }

  /** @internal What programs reference (runtime loadProgram's `maps`). */
  get native(): NativeProgArray {
    if (this.#native === undefined) {
      throw new BpfhookError("BAD_ARGUMENT", `map '${this.name}': closed`, { symbol: this.name });
    }
    return this.#native;
  }

  get closed(): boolean {
    return this.#native === undefined;
  }

  /** Puts `program` (loaded by the same runtime) into slot `index`, replacing what was there. */
  set(index: number, program: Program): this {
    this.#checkIndex("update", index);
    program.verification?.requireLoadVerified(`put into program array '${this.name}': its section selects no context to verify it with`);
    const rc = this.native.update(index, program.native);
    if (rc === -Errno.EXDEV) {
      throw new BpfhookError(
        "BAD_ARGUMENT",
        `map '${this.name}': update: prog '${program.name}' was loaded by another runtime`,
        { symbol: this.name, errno: rc },
      );
    }
    this.#check("update", rc);
    this.#slots.set(index, program);
    this.mirror?.(index, program);
    return this;
  }

  /** Empties slot `index`; false if it was empty. */
  delete(index: number): boolean {
    this.#checkIndex("delete", index);
    const rc = this.native.delete(index);
    this.#slots.delete(index);
    if (rc === 0) this.mirror?.(index, undefined);
    if (rc === -Errno.ENOENT) return false;
    this.#check("delete", rc);
    return true;
  }

  /** The name of the program in slot `index`, or undefined when it is empty. */
  get(index: number): string | undefined {
    this.#checkIndex("lookup", index);
    return this.native.lookup(index) ?? undefined;
  }

  /** Indexes of the filled slots, in order. */
  *keys(): IterableIterator<number> {
    for (let i = 0; i < this.maxEntries; i++) if (this.native.lookup(i) !== null) yield i;
  }

  /**
   * @internal Empties the slots holding one of `programs` (an object being
   * unloaded), so that no tail call reaches them any more.
   */
  dropPrograms(programs: ReadonlySet<Program>): void {
    for (const [index, program] of this.#slots) {
      if (programs.has(program)) this.delete(index);
    }
  }

  /** Forgets the handle; the array itself goes with the runtime. Idempotent. */
  close(): void {
    this.#native = undefined;
  }

  #checkIndex(op: string, index: number): void {
    if (!Number.isInteger(index) || index < 0) {
      throw new BpfhookError("BAD_ARGUMENT", `map '${this.name}': ${op}: index must be a non-negative integer`, {
        symbol: this.name,
      });
    }
    if (index >= this.maxEntries) this.#check(op, -Errno.E2BIG);
  }

  #check(op: string, rc: number): void {
    if (rc < 0) {
      throw mapError(this.name, op, rc, {
        typeName: this.typeName,
        maxEntries: this.maxEntries,
        ...(rc === -Errno.E2BIG ? { reason: `index out of range, ${this.maxEntries} slots` } : {}),
      });
    }
  }
}

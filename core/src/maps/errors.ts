/**
 * MAP_ERROR construction: native calls return negative errno values and
 * this turns one into "map 'counts': update: E2BIG (map full, 1024 entries)"
 * with `errno` set, so callers can branch on the number.
 */
import { BpfhookError } from "../errors.js";

/** Linux errno values the maps return (x86-64 / generic numbering). */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  E2BIG: 7,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EDEADLK: 35,
  EXDEV: 18,
  EINVAL: 22,
  ENOSPC: 28,
  ENAMETOOLONG: 36,
  EPROTO: 71,
  EOPNOTSUPP: 95,
} as const;

export function errnoName(errno: number): string {
  const n = Math.abs(errno);
  for (const [name, value] of Object.entries(Errno)) if (value === n) return name;
  return `errno ${n}`;
}

export interface MapErrorContext {
  /** Type name and limits, to explain E2BIG / ENOSPC in terms of the map. */
  typeName?: string;
  maxEntries?: number;
  /** Overrides the generic explanation. */
  reason?: string;
}

function explain(op: string, errno: number, ctx: MapErrorContext): string {
  const isArray = ctx.typeName === "array" || ctx.typeName === "percpu_array";
  const isQueue = ctx.typeName === "queue" || ctx.typeName === "stack";
  switch (-errno) {
    case Errno.E2BIG:
      if (isArray) return `index out of range, ${ctx.maxEntries} entries`;
      if (isQueue) return `${ctx.typeName} full, ${ctx.maxEntries} entries`;
      return `map full, ${ctx.maxEntries} entries`;
    case Errno.ENOSPC:
      return ctx.typeName === "lpm_trie" ? `trie full, ${ctx.maxEntries} entries` : "no space";
    case Errno.ENOENT:
      if (isQueue) return `${ctx.typeName} is empty`;
      if (ctx.typeName === "bloom_filter") return "not in the filter";
      return op === "update" ? "no such key (BPF_EXIST)" : "no such key";
    case Errno.EEXIST:
      return op === "update" ? "key exists (BPF_NOEXIST)" : "already exists";
    case Errno.EINVAL:
      if (op === "delete" && isArray) return "array elements cannot be deleted";
      if (op === "delete" && isQueue) return `use pop() on a ${ctx.typeName}`;
      return "invalid argument (flags or sizes)";
    case Errno.EOPNOTSUPP:
      if (ctx.typeName === "bloom_filter") return "a bloom filter only adds (push) and tests (peek / has)";
      return `not supported on a ${ctx.typeName ?? "map of this type"}`;
    case Errno.ENOMEM:
      return "shared region is full";
    case Errno.EAGAIN:
      return "no room in the ring";
    case Errno.EBUSY:
      if (op === "consume") return "another consumer holds the ring";
      return "a lock in the shared region stayed held by a live process past the wait (1 s)";
    case Errno.EDEADLK:
      return "the lock is held by this same thread";
    case Errno.EPROTO:
      return "storage layout not understood by this build";
    case Errno.EFAULT:
      return "shared storage is corrupt: an index, offset, length or count out of bounds was not followed";
    default:
      return "failed";
  }
}

export function mapError(mapName: string, op: string, errno: number, ctx: MapErrorContext = {}): BpfhookError {
  const reason = ctx.reason ?? explain(op, errno, ctx);
  return new BpfhookError("MAP_ERROR", `map '${mapName}': ${op}: ${errnoName(errno)} (${reason})`, {
    errno: -Math.abs(errno),
    symbol: mapName,
  });
}

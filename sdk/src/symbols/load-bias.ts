/**
 * The load bias of a mapped ELF file: what to add to a link-time address
 * (st_value, p_vaddr) to get the run-time one.
 *
 * The kernel and ld.so map each PT_LOAD from file offset pageDown(p_offset)
 * at address bias + pageDown(p_vaddr). So any one mapping of the file, with
 * its file offset, pins the bias, whatever the first segment's p_vaddr is
 * (0 for most libraries and PIEs, 0x400000 for a classic ET_EXEC, anything
 * for a library linked with -Ttext-segment). We use the lowest mapping: the
 * loader maps the first segment there, and it is seldom split or unmapped.
 */
import { hex, symbolError } from "./errors.js";
import type { ElfImage } from "./elf-symbols.js";
import type { MappedModule } from "./proc-maps.js";

/** x86-64's page size; mappings start at page boundaries of the file. */
const PAGE = 0x1000n;

export function loadBias(module: MappedModule, image: ElfImage): bigint {
  for (const range of module.ranges) {
    const seg = image.loads.find(
      (l) => l.filesz > 0n && pageDown(l.offset) <= range.offset && range.offset < l.offset + l.filesz,
    );
    // The address of file offset X in this segment is bias + p_vaddr + (X - p_offset).
    if (seg) return range.start - (seg.vaddr + range.offset - seg.offset);
  }
  const offsets = module.ranges.map((r) => hex(r.offset)).join(", ");
  throw symbolError(
    "ELF_INVALID",
    `${module.path}: no PT_LOAD segment of ${image.path} holds the mapped file offsets (${offsets}); ` +
      "is it the file that was mapped?",
    { file: module.path },
  );
}

function pageDown(v: bigint): bigint {
  return v & ~(PAGE - 1n);
}

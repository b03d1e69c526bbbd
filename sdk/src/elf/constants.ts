/**
 * ELF64 numbers from the System V gABI (and the GNU extensions the symbol
 * service meets), named as the spec names them so they can be looked up.
 * Only what a reader in this project uses is here.
 */

/** Sizes of the fixed-size ELF64 records. */
export const ELF_HEADER_SIZE = 64;
export const SECTION_HEADER_SIZE = 64;
export const PROGRAM_HEADER_SIZE = 56;
export const SYMBOL_SIZE = 24;
export const REL_SIZE = 16;
export const RELA_SIZE = 24;

/** e_ident[EI_CLASS] and e_ident[EI_DATA]. */
export const ELFCLASS64 = 2;
export const ELFDATA2LSB = 1;

/** e_type */
export const ET_REL = 1;
export const ET_EXEC = 2;
export const ET_DYN = 3;

/** e_machine */
export const EM_X86_64 = 62;
export const EM_BPF = 247;

/** p_type */
export const PT_LOAD = 1;
/** e_phnum when the real count is in section header 0's sh_info. */
export const PN_XNUM = 0xffff;

/** sh_type */
export const SHT_NULL = 0;
export const SHT_PROGBITS = 1;
export const SHT_SYMTAB = 2;
export const SHT_STRTAB = 3;
export const SHT_RELA = 4;
export const SHT_NOBITS = 8;
export const SHT_REL = 9;
export const SHT_DYNSYM = 11;
export const SHT_GNU_VERSYM = 0x6fffffff;

/** sh_flags */
export const SHF_WRITE = 0x1;
export const SHF_ALLOC = 0x2;
export const SHF_EXECINSTR = 0x4;

/** Special section indexes (st_shndx, e_shstrndx). */
export const SHN_UNDEF = 0;
/** Reserved indexes start here (ABS, COMMON, XINDEX...): they name no section. */
export const SHN_LORESERVE = 0xff00;
export const SHN_ABS = 0xfff1;
export const SHN_COMMON = 0xfff2;
/** The real index is elsewhere (section header 0, or SHT_SYMTAB_SHNDX). */
export const SHN_XINDEX = 0xffff;

/** Symbol binding, st_info >> 4. */
export const STB_LOCAL = 0;
export const STB_GLOBAL = 1;
export const STB_WEAK = 2;

/** Symbol type, st_info & 0xf. */
export const STT_NOTYPE = 0;
export const STT_OBJECT = 1;
export const STT_FUNC = 2;
export const STT_SECTION = 3;
/** GNU: the value is a resolver that returns the real function. */
export const STT_GNU_IFUNC = 10;

/** In a .gnu.version entry: the symbol's version is not the default one. */
export const VERSYM_HIDDEN = 0x8000;

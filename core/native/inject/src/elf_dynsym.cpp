#include "elf_dynsym.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace bpfhook::inject {

namespace {

// Bounds on what we read from an untrusted file: libc's .dynsym is ~3000
// entries (70 KiB), its .dynstr ~40 KiB.
constexpr uint64_t kMaxTable = 16u << 20;
constexpr uint16_t kMaxSections = 4096;
constexpr uint16_t kMaxPhdrs = 512;

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

bool read_at(int fd, uint64_t size_of_file, uint64_t off, void *buf, uint64_t len) {
  if (off > size_of_file || len > size_of_file - off) return false;
  auto *p = static_cast<uint8_t *>(buf);
  while (len > 0) {
    ssize_t n = pread(fd, p, len, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    off += static_cast<uint64_t>(n);
    len -= static_cast<uint64_t>(n);
  }
  return true;
}

}  // namespace

int find_dynsym(const std::string &file, const char *name, DynsymLookup *out, std::string *err) {
  Fd f;
  f.fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) {
    int e = errno;
    *err = file + ": " + strerror(e);
    return -e;
  }
  struct stat st {};
  if (fstat(f.fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    *err = file + ": not a regular file";
    return -EINVAL;
  }
  const uint64_t fsize = static_cast<uint64_t>(st.st_size);
  auto bad = [&](const char *what) {
    *err = file + ": bad ELF (" + what + ")";
    return -ENOEXEC;
  };

  Elf64_Ehdr eh{};
  if (!read_at(f.fd, fsize, 0, &eh, sizeof eh)) return bad("short header");
  if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_machine != EM_X86_64)
    return bad("not ELF64 little-endian x86-64");
  if (eh.e_shentsize != sizeof(Elf64_Shdr) || eh.e_shnum == 0 || eh.e_shnum > kMaxSections)
    return bad("section headers");
  if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > kMaxPhdrs) return bad("program headers");

  // The load bias is the mapping of offset 0 minus the first PT_LOAD's page.
  std::vector<Elf64_Phdr> ph(eh.e_phnum);
  if (!read_at(f.fd, fsize, eh.e_phoff, ph.data(), ph.size() * sizeof(Elf64_Phdr))) return bad("program headers");
  bool have_load = false;
  for (const auto &p : ph) {
    if (p.p_type == PT_LOAD) {
      out->first_load = p.p_vaddr & ~uint64_t{0xfff};
      have_load = true;
      break;
    }
  }
  if (!have_load) return bad("no PT_LOAD");

  std::vector<Elf64_Shdr> sh(eh.e_shnum);
  if (!read_at(f.fd, fsize, eh.e_shoff, sh.data(), sh.size() * sizeof(Elf64_Shdr))) return bad("section headers");
  const Elf64_Shdr *dynsym = nullptr;
  const Elf64_Shdr *versym = nullptr;
  for (const auto &s : sh) {
    if (s.sh_type == SHT_DYNSYM && dynsym == nullptr) dynsym = &s;
    if (s.sh_type == SHT_GNU_versym && versym == nullptr) versym = &s;
  }
  if (dynsym == nullptr) return bad("no .dynsym");
  if (dynsym->sh_link >= sh.size()) return bad(".dynsym sh_link");
  const Elf64_Shdr &dynstr = sh[dynsym->sh_link];
  if (dynsym->sh_size > kMaxTable || dynstr.sh_size > kMaxTable || dynsym->sh_size % sizeof(Elf64_Sym) != 0)
    return bad(".dynsym/.dynstr size");

  std::vector<Elf64_Sym> syms(dynsym->sh_size / sizeof(Elf64_Sym));
  std::vector<char> strs(dynstr.sh_size);
  if (!read_at(f.fd, fsize, dynsym->sh_offset, syms.data(), dynsym->sh_size)) return bad(".dynsym outside file");
  if (!read_at(f.fd, fsize, dynstr.sh_offset, strs.data(), dynstr.sh_size)) return bad(".dynstr outside file");
  std::vector<uint16_t> vers;
  if (versym != nullptr && versym->sh_size == syms.size() * sizeof(uint16_t)) {
    vers.resize(syms.size());
    if (!read_at(f.fd, fsize, versym->sh_offset, vers.data(), versym->sh_size)) vers.clear();
  }

  const size_t name_len = strlen(name);
  uint64_t found = 0;
  bool found_default = false;
  for (size_t i = 0; i < syms.size(); i++) {
    const Elf64_Sym &s = syms[i];
    if (s.st_shndx == SHN_UNDEF || s.st_value == 0) continue;
    unsigned type = ELF64_ST_TYPE(s.st_info);
    if (type != STT_FUNC && type != STT_GNU_IFUNC) continue;
    // The name must end (NUL) inside .dynstr.
    if (s.st_name >= strs.size() || strs.size() - s.st_name <= name_len) continue;
    if (memcmp(&strs[s.st_name], name, name_len + 1) != 0) continue;
    // An IFUNC's value is its resolver, not the function: calling it would
    // not load anything, so refuse rather than guess.
    if (type == STT_GNU_IFUNC) continue;
    bool is_default = vers.empty() || (vers[i] & 0x8000) == 0;
    if (found == 0 || (is_default && !found_default)) {
      found = s.st_value;
      found_default = is_default;
    }
  }
  if (found == 0) {
    *err = file + ": no defined function '" + name + "' in .dynsym";
    return -ENOENT;
  }
  out->value = found;
  return 0;
}

}  // namespace bpfhook::inject

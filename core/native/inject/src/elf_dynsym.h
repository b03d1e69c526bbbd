// A bounded reader of an ELF64 file's dynamic symbols, for the injector's
// lookup of dlopen in the target's libc. The file belongs to the target, so it
// is untrusted input: every offset and size is checked against the file.
#pragma once
#include <cstdint>
#include <string>

namespace bpfhook::inject {

struct DynsymLookup {
  uint64_t value = 0;       // st_value of the symbol (0: not found)
  uint64_t first_load = 0;  // p_vaddr of the first PT_LOAD, page aligned down
};

// Finds the defined function `name` in `file`'s .dynsym, preferring the
// default version (versym without the hidden bit) when several match.
// Returns 0, -ENOENT when absent, or another negative errno with `err` set.
int find_dynsym(const std::string &file, const char *name, DynsymLookup *out, std::string *err);

}  // namespace bpfhook::inject

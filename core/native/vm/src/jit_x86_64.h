// The x86-64 back end of the JIT, called by the arch-neutral driver (jit.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "vm_internal.h"

namespace bh {

// Emits the loaded program as x86-64 machine code into `out`. The code is
// position independent (internal references are pc-relative; helpers and
// run-time support are called by absolute address), so the driver may copy
// it anywhere. `entries` receives the offset in `out` of each callback's
// entry point (vm->callbacks order). Returns 0, or -1 and fills err.
// `reaches_c`: whether the code may call C (bh_vm_jit_reaches_c).
int jit_emit_x86_64(const bh_vm *vm, std::vector<uint8_t> &out, std::vector<size_t> &entries, bool *reaches_c,
                    char *err, size_t err_len);

}  // namespace bh

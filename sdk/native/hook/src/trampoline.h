// Machine code the engine generates: the shared entry and return paths and
// the small per-function stub.
#pragma once

#include <cstddef>
#include <cstdint>

#include "internal.h"
#include "x86_emit.h"

namespace bh {

// Shared code, built once per process.
//  common entry: called by every function stub with rax = HookCore*, the
//    original rax saved in the frame at [rsp+8]; saves the rest, calls
//    bh_on_enter, restores everything (with what listeners wrote) and
//    returns with the flags of `cmp action, 1`.
//  return trampoline: stubs jump here when the function they called for a
//    return probe returns (rsp = the caller's rsp after the return); it
//    calls bh_on_return, restores, and `ret`s to the real return address
//    that bh_on_return wrote into the caller's slot.
struct SharedCode {
  uint64_t common_entry = 0;
  uint64_t mid_entry = 0;  // for probes inside a function: restores the flags too
  uint64_t ret_tramp = 0;
};
// Emits both into `a` (placed at a.here()).
void emit_shared(Asm &a, SharedCode &out);

// Per-function slot: two literals (the common entry and the return
// trampoline, used only when they are out of rel32 reach), then the stub:
//     lea  rsp, [rsp-312]      ; the frame (184) below the red zone (128)
//     mov  [rsp+80], rax       ; pt_regs.rax
//     mov  rax, <HookCore*>
//     call common_entry        ; flags: cmp <action>, 1
//     lea  rsp, [rsp+312]
//     jb   run                 ; kRun
//     je   now                 ; kReturnNow: rax is the value
//     lea  rsp, [rsp+8]        ; kRunAndTrap: the return address is saved
//     call run                 ;   in the shadow stack; ours replaces it
// after:
//     jmp  return_trampoline
// now:
//     ret
// run:
//     <relocated first instructions>; jmp back
// The relocated code goes at a.here() after the call.  A probe inside a
// function (`mid`) calls the mid entry and falls through to `run`: no
// return probes, no override there.
struct StubAddrs {
  uint64_t entry;  // where the patch jumps
  uint64_t after;  // return point of `call run`
};
StubAddrs emit_stub(Asm &a, uint64_t slot, const HookCore *hook, const SharedCode &shared, bool mid);

constexpr size_t kSlotSize = 256;

}  // namespace bh

#!/usr/bin/env bash
# Builds the native selftests (C++ test drivers of the VM, JIT, helpers, maps
# hook engine and text transformer) that test/05.native-selftests and
# test/46.text-transformer run. Incremental.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"

cmake -S core/native -B core/build-selftests -DBPFHOOK_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build core/build-selftests -j"$jobs" --target \
  bpfvm_selftest bpfvm_jit_selftest helpers_selftest maps_native_test maps_vm_test region_lock_holder \
  agent_area_selftest vector_clean_test >/dev/null

if [ -f sdk/native/hook/CMakeLists.txt ]; then
  cmake -S sdk/native/hook -B sdk/native/hook/build-selftests -DBH_HOOK_BUILD_TESTS=ON \
    -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build sdk/native/hook/build-selftests -j"$jobs" --target hook_selftest hook_two_copies >/dev/null
fi

if [ -f plugins/syscall-trace/CMakeLists.txt ]; then
  cmake -S plugins/syscall-trace -B plugins/syscall-trace/build-selftests -DBH_SC_BUILD_TESTS=ON \
    -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build plugins/syscall-trace/build-selftests -j"$jobs" --target sc_dispatch_selftest >/dev/null
fi

if [ -f plugins/text-transformer/CMakeLists.txt ]; then
  cmake -S plugins/text-transformer -B plugins/text-transformer/build-selftests -DBH_TT_BUILD_TESTS=ON \
    -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build plugins/text-transformer/build-selftests -j"$jobs" --target tt_selftest >/dev/null
fi

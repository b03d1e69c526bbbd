#!/usr/bin/env bash
# Lists the native sources under one style (.clang-format): everything C/C++
# that git tracks in core/native, plugins/*/native, sdk/include, sdk/native, testkit/native,
# test/native, examples/*/native and the USDT test's C fixtures.
cd "$(dirname "$0")/.."
git ls-files 'core/native/*.c' 'core/native/*.cpp' 'core/native/*.h' 'core/native/*.hpp' \
  'plugins/*/native/*.c' 'plugins/*/native/*.cpp' 'plugins/*/native/*.h' 'plugins/*/native/*.hpp' \
  'sdk/include/*.h' 'sdk/native/*.c' 'sdk/native/*.cpp' 'sdk/native/*.h' 'testkit/native/*.cpp' \
  'test/native/*.c' 'test/native/*.cpp' 'test/native/*.h' \
  'examples/*/native/*.c' 'examples/*/native/*.cpp' 'examples/*/native/*.h' 'test/fixtures/usdt/*.c'

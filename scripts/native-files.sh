#!/usr/bin/env bash
# Lists the native sources under one style (.clang-format): everything C/C++
# that git tracks in core/native, plugins/*/native, sdk/include, testkit/native and test/native.
cd "$(dirname "$0")/.."
git ls-files 'core/native/*.c' 'core/native/*.cpp' 'core/native/*.h' 'core/native/*.hpp' \
  'plugins/*/native/*.c' 'plugins/*/native/*.cpp' 'plugins/*/native/*.h' 'plugins/*/native/*.hpp' \
  'sdk/include/*.h' 'testkit/native/*.cpp' 'test/native/*.c' 'test/native/*.cpp' 'test/native/*.h'

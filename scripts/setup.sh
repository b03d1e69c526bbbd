#!/usr/bin/env bash
# One command from a fresh clone: system packages, npm packages, the native
# build, the TypeScript build, then the built-in example.
#   bash scripts/setup.sh            everything, then `npm run example`
#   bash scripts/setup.sh --no-example   everything but the example (CI)
set -euo pipefail
cd "$(dirname "$0")/.."

run_example=1
for arg in "$@"; do
  case "$arg" in
    --no-example) run_example=0 ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

# Build and test needs: clang for -target bpf, libbpf headers for fixtures,
# Zydis for the hook engine's decoder, cmake/g++ for the data plane.
# bpftrace is only the kernel-uprobe anchor of bench:uprobe; clang-format
# checks the native style (test 01, npm run lint). strace is what test 47
# compares the syscall-trace plugin's opens with. systemtap-sdt-dev is <sys/sdt.h>
# for test 48's USDT probes (examples/usdt-plugin).
packages=(clang clang-format libbpf-dev libelf-dev libzydis-dev libzycore-dev cmake g++ make python3 bpftrace strace systemtap-sdt-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build

if [ "$run_example" -eq 1 ]; then
  npm run --silent example
fi

#!/usr/bin/env bash
# System-call tracing end to end (plugins/syscall-trace): compile opensnoop,
# then run a command under bpfhook with it. Any command works:
#   bash examples/syscall/run.sh -- ls /tmp
set -euo pipefail
cd "$(dirname "$0")"
bpfhook=(node ../../core/bin/bpfhook.js)
mkdir -p build
"${bpfhook[@]}" compile opensnoop.bpf.c -o build/opensnoop.bpf.o >/dev/null
if [ "${1:-}" = "--" ]; then shift; fi
if [ $# -eq 0 ]; then set -- sh -c 'cat /etc/hostname >/dev/null; cat /no/such/file 2>/dev/null; true'; fi
"${bpfhook[@]}" run -q -c opensnoop.yaml -- "$@"

#!/usr/bin/env bash
# The operator's path end to end (docs/AGENT.md): build an ordinary program,
# compile the eBPF program, and run the program under bpfhook's agent.
set -euo pipefail
cd "$(dirname "$0")"
bpfhook=(node ../../core/bin/bpfhook.js)
mkdir -p build
gcc -O1 -g -o build/app app.c
"${bpfhook[@]}" compile hooks.bpf.c -o build/hooks.bpf.o >/dev/null
"${bpfhook[@]}" run -c hooks.yaml -- ./build/app "$@"

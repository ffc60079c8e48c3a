#!/usr/bin/env bash
# `make bench`: starts a fresh local stack (like the e2e suite) and runs the
# benchmark scripts in tests/bench/ against it. Prints numbers; asserts nothing.
set -euo pipefail
source "$(dirname "$0")/stack.sh"
cd "$ROOT"
STATE="$(mktemp -d "${TMPDIR:-/tmp}/dex-bench.XXXXXX")"
trap 'stack_stop; rm -rf "$STATE"' EXIT
bash scripts/toolchain.sh
bash scripts/build-worker.sh
DEX_SKIP_BUILD=1 stack_start "$(free_port)" "$(free_port)" "$STATE/persist" "$STATE" 0 \
  --var "LOGIN_IP_PER_MINUTE:10000" --var "LOGIN_IP_BURST:10000"
export DEX_STACK_JSON="$STATE/stack.json"
python3 tests/bench/keys.py

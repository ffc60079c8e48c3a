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
# The request limits (per key: the plan's, 60/min burst 10 by default;
# service-wide: 10,000/min) are raised so that proxy.py can load the AI proxy
# with an ordinary (non-operator) key; keys.py does not depend on them.
export DEX_BENCH_RATE_LIMIT=1000000
DEX_SKIP_BUILD=1 stack_start "$(free_port)" "$(free_port)" "$STATE/persist" "$STATE" 0 \
  --var "LOGIN_IP_PER_MINUTE:10000" --var "LOGIN_IP_BURST:10000" \
  --var "RATE_LIMIT_PER_MINUTE:$DEX_BENCH_RATE_LIMIT" --var "RATE_LIMIT_BURST:$DEX_BENCH_RATE_LIMIT" \
  --var "GLOBAL_RATE_LIMIT_PER_MINUTE:$DEX_BENCH_RATE_LIMIT"
export DEX_STACK_JSON="$STATE/stack.json"
python3 tests/bench/keys.py
echo
# The fake upstream direct, a pass-through Worker, our proxy and LiteLLM; it
# starts (and stops, by process group) its own pass-through Worker and LiteLLM.
python3 tests/bench/proxy.py

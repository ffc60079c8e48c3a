#!/usr/bin/env bash
# The end-to-end suite: build the Worker once, start the fakes and the Worker
# in workerd on free ports with fresh state, run the Rust end-to-end tests
# against them, tear down by process group. Prints the Worker's log on failure.
set -euo pipefail
source "$(dirname "$0")/stack.sh"
cd "$ROOT"

STATE="$(mktemp -d "${TMPDIR:-/tmp}/dex-e2e.XXXXXX")"
status=1
finish() {
  stack_stop
  if [ "$status" -ne 0 ]; then
    echo "---- worker log ($STATE/worker.log) ----" >&2
    tail -n 300 "$STATE/worker.log" >&2 2>/dev/null || true
    echo "---- fakes log ----" >&2
    tail -n 50 "$STATE/fakes.log" >&2 2>/dev/null || true
  else
    rm -rf "$STATE"
  fi
}
trap finish EXIT

if [ "${DEX_WORKER_BUILT:-}" != "1" ]; then
  stack_log "building the Worker"
  bash scripts/build-worker.sh
fi
# Test binaries build before the stack starts, so their compile time does not
# run against the stack's clock.
cargo test -q -p dex-edge-tests --no-run

# Every test request comes from 127.0.0.1, so the per-IP sign-in bucket is
# widened here; the per-account bucket keeps its production setting. Wallet
# holds expire after 4 s (10 min in production) so the alarm that settles an
# abandoned hold can be seen; no other test request lasts that long.
DEX_SKIP_BUILD=1 stack_start "$(free_port)" "$(free_port)" "$STATE/persist" "$STATE" 0 \
  --var "LOGIN_IP_PER_MINUTE:10000" --var "LOGIN_IP_BURST:10000" \
  --var "OPENROUTER_PER_ACCOUNT_KEYS:true" --var "OPENROUTER_ACCOUNT_LIMIT_USD:25" \
  --var "WALLET_HOLD_TTL_MS:4000" --var "PLAN_INCLUDED_TOKENS:1000"

export DEX_STACK_JSON="$STATE/stack.json"
# E2E_SKIP=name skips tests whose name contains it (for working on one area).
skip=(); [ -n "${E2E_SKIP:-}" ] && skip=(--skip "$E2E_SKIP")
cargo test -p dex-edge-tests --test e2e -- --test-threads 4 ${skip[@]+"${skip[@]}"}
# The official OpenAI and Anthropic SDKs as clients.
.venv/bin/python -m pytest -q -p no:cacheprovider tests/sdk
cargo test -p dex-edge-tests --test e2e_storage -- --test-threads 1 ${skip[@]+"${skip[@]}"}
# Last, with every other request made: nothing secret reached the Worker's log.
cargo test -p dex-edge-tests --test log_hygiene
status=0

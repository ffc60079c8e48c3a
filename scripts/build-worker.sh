#!/usr/bin/env bash
# Builds the Worker (wasm + JS shim) into workers/edge/build/. wrangler runs
# this as its [build] command; DEX_SKIP_BUILD=1 makes it a no-op when the
# caller has built already (the test harness builds once).
set -euo pipefail
[ "${DEX_SKIP_BUILD:-}" = "1" ] && exit 0
root="$(cd "$(dirname "$0")/.." && pwd)"
# worker-build would download these from GitHub; use the installed ones.
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen)}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$root/node_modules/.bin/wasm-opt}"
export ESBUILD_BIN="${ESBUILD_BIN:-$root/node_modules/@esbuild/linux-x64/bin/esbuild}"
cd "$root/workers/edge"
exec worker-build --release

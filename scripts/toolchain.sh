#!/usr/bin/env bash
# Installs what building and running the Worker needs, skipping whatever is
# already there: the wasm target, worker-build, the wasm-bindgen CLI matching
# Cargo.lock exactly, and the npm tools (wrangler, wasm-opt). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

WORKER_BUILD_VERSION=0.8.7
log() { printf '[toolchain] %s\n' "$*" >&2; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

if [ "$(worker-build --version 2>/dev/null | awk '{print $2}')" != "$WORKER_BUILD_VERSION" ]; then
  log "installing worker-build $WORKER_BUILD_VERSION (several minutes, once per machine)"
  cargo install worker-build --version "$WORKER_BUILD_VERSION"
fi

# wasm-bindgen's CLI must equal the library version in Cargo.lock.
if [ ! -f Cargo.lock ]; then cargo generate-lockfile; fi
WBG_VERSION=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/"/,"",$3); print $3; exit}' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WBG_VERSION" ]; then
  log "installing wasm-bindgen-cli $WBG_VERSION (several minutes, once per machine)"
  # No --locked: one of its pinned dependencies is missing from the registry.
  cargo install wasm-bindgen-cli --version "=$WBG_VERSION"
fi

# npm ci only when the lock changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing npm tools (wrangler, binaryen)"
  npm ci --no-audit --no-fund --loglevel=error
fi
# The official OpenAI and Anthropic SDKs, which the e2e suite drives the proxy with.
if [ ! -x .venv/bin/python ] || ! cmp -s tests/sdk/requirements.txt .venv/.requirements 2>/dev/null; then
  log "installing the SDK test clients into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r tests/sdk/requirements.txt
  cp tests/sdk/requirements.txt .venv/.requirements
fi
log "ready: $(worker-build --version), wasm-bindgen $WBG_VERSION, wrangler $(node_modules/.bin/wrangler --version 2>/dev/null | tail -1)"

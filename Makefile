# Dex Edge. The two commands a newcomer needs:
#   make dev   — the whole stack locally, offline (Worker in workerd + fakes)
#   make test  — every test: native unit tests, then end-to-end against workerd
.PHONY: dev test unit e2e toolchain build lint deploy-check size bench

dev:
	bash scripts/dev.sh

test: toolchain unit deploy-check
	DEX_WORKER_BUILT=1 bash scripts/e2e.sh

toolchain:
	bash scripts/toolchain.sh

unit:
	cargo test -p dex-shared -p dex-queues -p dex-edge-tests --lib

e2e:
	bash scripts/e2e.sh

build: toolchain
	bash scripts/build-worker.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p dex-edge-worker --target wasm32-unknown-unknown -- -D warnings

# Validates wrangler.toml and the bundle as a real deployment would, offline.
deploy-check: build
	WRANGLER_SEND_METRICS=false DEX_SKIP_BUILD=1 node_modules/.bin/wrangler deploy --dry-run --outdir .dev/dry-run

size: build
	@printf 'wasm: %s bytes, gzip: %s bytes\n' $$(stat -c %s workers/edge/build/index_bg.wasm) $$(gzip -9c workers/edge/build/index_bg.wasm | wc -c)

# Benchmarks print numbers; they are not tests.
bench:
	bash scripts/bench.sh

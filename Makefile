# The two commands of the README, and a few for development.
# A stable target directory outside the clone lets repeated runs reuse builds.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/hailstone/target
# Tools installed by scripts/setup.sh (wasm-opt from npm, cargo-leptos).
export PATH := $(HOME)/.cache/hailstone/tools/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)

.PHONY: run test bench watch fmt lint cluster

## Build in release mode and serve on http://127.0.0.1:3000
run:
	scripts/setup.sh build
	cargo leptos serve --release --precompress

## A local cluster: Redis, three nodes on :3001-3003, haproxy on :3000
cluster:
	scripts/setup.sh cluster
	cargo leptos build --release --precompress
	scripts/cluster.sh

## Every test: the cargo tests of all crates, then Playwright in Chromium
test:
	scripts/setup.sh test
	scripts/test.sh

## Benchmarks: criterion and the load generator (figures in BENCHMARKS.md)
bench:
	scripts/bench.sh

## Develop with live reload
watch:
	scripts/setup.sh build
	cargo leptos watch

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy -p shared --all-targets -- -D warnings
	cargo clippy -p server --all-targets -- -D warnings
	cargo clippy -p loadgen --all-targets -- -D warnings
	cargo clippy -p app --features hydrate --target wasm32-unknown-unknown -- -D warnings

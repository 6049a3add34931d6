#!/usr/bin/env bash
# Runs every test: the pure domain, the server and app crates (as cargo-leptos
# builds them), the wasm build of the domain, and the Playwright suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cache/hailstone/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }

step "cargo test -p shared"
cargo test -p shared

step "shared builds for wasm32-unknown-unknown"
cargo build -p shared --target wasm32-unknown-unknown

step "cargo leptos test (server with ssr, app with hydrate)"
cargo leptos test

step "cargo leptos end-to-end --release --precompress (Playwright in Chromium, against what 'make run' serves)"
# A fast step interval keeps the suite short; streams that the server ends
# every few seconds prove that every page resumes without losing a value.
# Sessions go to a store of this run's own. Every test browser comes from
# 127.0.0.1, so the per-address rate of new sessions is raised.
store_dir=$(mktemp -d)
trap 'rm -rf "$store_dir"' EXIT
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hailstone/target}"
HAILSTONE_STEP_INTERVAL_MS=100 HAILSTONE_STREAM_LIFETIME_SECS=4 \
  HAILSTONE_NEW_SESSIONS_PER_MINUTE=100000 \
  HAILSTONE_STORE_PATH="$store_dir/e2e.db" \
  HAILSTONE_SERVER_BIN="$CARGO_TARGET_DIR/release/server" \
  cargo leptos end-to-end --release --precompress

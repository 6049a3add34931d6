#!/usr/bin/env bash
# Installs what building, serving and testing Hailstone need, skipping what is
# already present. Safe to run any number of times. Usage:
#   scripts/setup.sh build   # toolchain target, cargo-leptos, wasm-bindgen, wasm-opt
#   scripts/setup.sh cluster # build, plus redis-server, redis-sentinel and haproxy (Debian) for a local cluster
#   scripts/setup.sh test    # all of the above, plus Chromium and the Playwright packages
set -euo pipefail

cd "$(dirname "$0")/.."
want=${1:-build}

CARGO_LEPTOS_VERSION=0.3.10
# wasm-opt from npm: Debian's binaryen 108 emits a wasm whose function tables
# the browser refuses ("WebAssembly.Table.set(): Argument 1 is invalid").
BINARYEN_VERSION=132.0.0
TOOLS="$HOME/.cache/hailstone/tools"
export PATH="$TOOLS/node_modules/.bin:$HOME/.cargo/bin:$PATH"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# Runs apt-get as root, or through sudo when there is one.
apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ ! -f /tmp/.hailstone-apt-updated ]; then
    $sudo apt-get update -q && touch /tmp/.hailstone-apt-updated
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "$@"
}

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if [ "$(cargo leptos --version 2>/dev/null)" != "cargo-leptos $CARGO_LEPTOS_VERSION" ]; then
  say "installing cargo-leptos $CARGO_LEPTOS_VERSION (compiles from source, about 15 minutes)"
  cargo install cargo-leptos --version "$CARGO_LEPTOS_VERSION" --locked --features no_downloads
fi

# The CLI must be the exact version of the wasm-bindgen crate in Cargo.lock.
bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $bindgen_version" ]; then
  say "installing wasm-bindgen-cli $bindgen_version"
  # Not --locked: one of its locked dependencies is not served by the registry here.
  cargo install wasm-bindgen-cli --version "$bindgen_version" --force
fi

if [ "$(wasm-opt --version 2>/dev/null)" != "wasm-opt version ${BINARYEN_VERSION%%.*} (version_${BINARYEN_VERSION%%.*})" ]; then
  say "installing wasm-opt (npm binaryen $BINARYEN_VERSION)"
  mkdir -p "$TOOLS"
  npm install --prefix "$TOOLS" --no-audit --no-fund "binaryen@$BINARYEN_VERSION"
fi

if [ "$want" = test ] || [ "$want" = cluster ]; then
  # Cluster mode's store, and the balancer of `make cluster` and its tests.
  # Installing redis-server (or redis-sentinel) may start a system service on
  # port 6379 (26379); the tests and `make cluster` run their own on other
  # ports.
  if ! command -v redis-server >/dev/null; then
    say "installing redis-server (Debian)"
    apt_install redis-server
  fi
  # Sentinel: the cluster's Redis without a single point of failure.
  if ! command -v redis-sentinel >/dev/null; then
    say "installing redis-sentinel (Debian)"
    apt_install redis-sentinel
  fi
  if ! command -v haproxy >/dev/null; then
    say "installing haproxy (Debian)"
    apt_install haproxy
  fi
  if ! command -v curl >/dev/null; then
    say "installing curl"
    apt_install curl
  fi
fi

if [ "$want" = test ]; then
  # chattr makes a store file unwritable even for root, for the read-only
  # store tests (CI runs as root).
  if ! command -v chattr >/dev/null; then
    say "installing e2fsprogs (chattr)"
    apt_install e2fsprogs
  fi
  if [ ! -x /usr/bin/chromium ]; then
    say "installing Chromium (Debian)"
    apt_install chromium
  fi
  if ! (cd end2end && npm ls --depth=0 >/dev/null 2>&1); then
    say "installing the Playwright packages"
    (cd end2end && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
  fi
fi

#!/usr/bin/env bash
# Hailstone's benchmarks: criterion for the step engine, then the load
# generator against a release server pinned to one core (the load generator
# on the other). Results go to target/bench/. Usage:
#   scripts/bench.sh            # everything (about 10 minutes after the builds)
#   scripts/bench.sh engine     # criterion only
#   scripts/bench.sh records    # record search against a plain loop, [1, 10^9] (a few minutes)
#   scripts/bench.sh load       # load runs only
#   scripts/bench.sh load NAME  # one load run (names below)
#   scripts/bench.sh wal        # the store's log under 1,000 sessions at interval 0, 10 min
#   scripts/bench.sh restart    # restart with 100,000 stored sessions; memory per session
#   scripts/bench.sh pages      # a page of values far into a 1,000-digit run
#   scripts/bench.sh lighthouse # Lighthouse (mobile) on the release build, three runs
#   scripts/bench.sh search     # [1, 10^9] searched through the server on every core;
#                               # 1,000 sessions' command round trips with and without a search
#   scripts/bench.sh search-cluster  # [1, 10^9] searched by a cluster of one node, then two
#   scripts/bench.sh cluster [NAME]  # nodes, Redis (with Sentinel) and haproxy: load,
#                                    # memory, the cost of WAIT, a node killed, the
#                                    # Redis primary killed, a rolling restart
# BENCH_ENV="VAR=value ..." passes extra environment to the server.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cache/hailstone/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hailstone/target}"
what=${1:-all}
out=target/bench
mkdir -p "$out"

scripts/setup.sh build

if [ "$what" = all ] || [ "$what" = engine ]; then
  cargo bench -p shared --bench step -- --noplot 2>&1 | tee "$out/engine.txt"
fi
[ "$what" = engine ] && exit 0
if [ "$what" = records ]; then
  cargo bench -p shared --bench records -- "${2:-1000000000}" "${3:-100000000}" 2>&1 | tee "$out/records.txt"
  exit 0
fi

cargo leptos build --release --precompress
cargo build --release -p loadgen
command -v taskset >/dev/null || { echo "taskset (util-linux) is needed"; exit 1; }
# Every browser holds a socket at each end: raise the open-file limit as far
# as this machine allows (its hard limit caps the largest run below).
ulimit -n "$(ulimit -Hn)"
max_sessions=$(( $(ulimit -n) - 2000 ))

addr=127.0.0.1:3999
# Every simulated browser comes from 127.0.0.1: the per-address limits (new
# sessions, open streams, connections) are lifted, and the connection cap is left to the
# open-file limit.
export HAILSTONE_NEW_SESSIONS_PER_MINUTE=1000000 HAILSTONE_STREAMS_PER_ADDRESS=1000000 \
  HAILSTONE_MAX_CONNECTIONS=1000000 HAILSTONE_CONNECTIONS_PER_ADDRESS=1000000
# /metrics answers only with this token; loadgen reads the same variable.
export HAILSTONE_METRICS_TOKEN=bench
server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap stop_server EXIT

# run_load NAME SESSIONS INTERVAL DURATION [loadgen flags...]
run_load() {
  local name=$1 sessions=$2 interval=$3 duration=$4
  shift 4
  # Each run starts from an empty store of its own.
  rm -f "$out/store.db" "$out/store.db-wal" "$out/store.db-shm"
  LEPTOS_SITE_ADDR=$addr LEPTOS_OUTPUT_NAME=hailstone HAILSTONE_MAX_SESSIONS=100000 \
    HAILSTONE_STORE_PATH="$out/store.db" \
    TOKIO_WORKER_THREADS=1 RUST_LOG=warn \
    env ${BENCH_ENV:-} taskset -c 0 "$CARGO_TARGET_DIR/release/server" &
  server_pid=$!
  for _ in $(seq 100); do
    curl -fs "http://$addr/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "== $name: $sessions sessions, interval ${interval} ms, ${duration} s" | tee "$out/load-$name.txt"
  taskset -c 1 "$CARGO_TARGET_DIR/release/loadgen" --addr $addr --sessions "$sessions" \
    --interval "$interval" --duration "$duration" --pid "$server_pid" "$@" | tee -a "$out/load-$name.txt"
  # The server's own view of the commands, by bucket: time in the runtime
  # (command_seconds) and in the whole server function (server_fn_seconds).
  curl -fs -H "Authorization: Bearer $HAILSTONE_METRICS_TOKEN" "http://$addr/metrics" | grep -E '^hailstone_(command|server_fn)_seconds' >>"$out/load-$name.txt" || true
  stop_server
}

if [ "$what" = restart ]; then
  cargo run --release -p server --example restart -- \
    --server "$CARGO_TARGET_DIR/release/server" | tee "$out/restart.txt"
  exit 0
fi

if [ "$what" = pages ]; then
  # A page of 100 values of a 1,000-digit run at step 30,000, and at random
  # steps, through the server function.
  cargo run --release -p server --example pages -- \
    --server "$CARGO_TARGET_DIR/release/server" | tee "$out/pages.txt"
  exit 0
fi

if [ "$what" = search ]; then
  cargo build --release -p server --example search
  search_bench="$CARGO_TARGET_DIR/release/examples/search"
  "$search_bench" --server "$CARGO_TARGET_DIR/release/server" --to "${2:-1000000000}" | tee "$out/search.txt"
  # 1,000 sessions at 0.5 s on a server with every core (not pinned, as a
  # search uses them all), with no search and then beside one.
  for beside in none search; do
    rm -f "$out/store.db" "$out/store.db-wal" "$out/store.db-shm"
    LEPTOS_SITE_ADDR=$addr HAILSTONE_MAX_SESSIONS=100000 HAILSTONE_STORE_PATH="$out/store.db" \
      RUST_LOG=warn "$CARGO_TARGET_DIR/release/server" &
    server_pid=$!
    for _ in $(seq 100); do curl -fs "http://$addr/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
    held=""
    if [ "$beside" = search ]; then
      "$search_bench" --addr $addr --to 100000000000 --hold 40 >"$out/search-held.txt" &
      held=$!
      sleep 3
    fi
    echo "== n1000 beside $beside: 1000 sessions, interval 500 ms, 30 s" | tee -a "$out/search.txt"
    "$CARGO_TARGET_DIR/release/loadgen" --addr $addr --sessions 1000 --interval 500 --duration 30 \
      --pid "$server_pid" | tee -a "$out/search.txt"
    if [ -n "$held" ]; then
      wait "$held"
      tee -a "$out/search.txt" <"$out/search-held.txt"
    fi
    stop_server
  done
  exit 0
fi

if [ "$what" = search-cluster ]; then
  # One Redis (no sentinels) and one node, then two, on this machine: the
  # search offered as chunks, every node taking them.
  scripts/setup.sh cluster
  cargo build --release -p server --example search
  : >"$out/search-cluster.txt"
  # Then each node on one core of its own with one work thread, as nodes on
  # machines of one core: what the split gains with every node added.
  for run in "1 free" "2 free" "1 pinned" "2 pinned"; do
    read -r nodes how <<<"$run"
    cluster_dir=/tmp/hailstone-bench-search-$nodes-$how
    rm -rf "$cluster_dir"
    pinned=()
    [ "$how" = free ] || pinned=(CLUSTER_PIN=1 HAILSTONE_SEARCH_THREADS=1)
    env "${pinned[@]}" CLUSTER_DIR="$cluster_dir" CLUSTER_PORT=3990 CLUSTER_NODES="$nodes" \
      CLUSTER_REDIS_PORT=6499 CLUSTER_SENTINELS=0 RUST_LOG=warn \
      scripts/cluster.sh >"$out/search-cluster-run.txt" 2>&1 &
    server_pid=$!
    for _ in $(seq 600); do [ -f "$cluster_dir/ready" ] && break; sleep 0.1; done
    [ -f "$cluster_dir/ready" ] || { cat "$out/search-cluster-run.txt"; exit 1; }
    echo "== $nodes node(s), $how, one Redis" | tee -a "$out/search-cluster.txt"
    "$CARGO_TARGET_DIR/release/examples/search" --addr 127.0.0.1:3991 --to "${2:-1000000000}" |
      tee -a "$out/search-cluster.txt"
    stop_server
    rm -rf "$cluster_dir"
  done
  exit 0
fi

if [ "$what" = lighthouse ]; then
  # Lighthouse 12 (mobile defaults: simulated slow 4G and a 4x slower CPU)
  # in Debian's Chromium against the release build, three runs. 12.2.3:
  # later 12.x locks are refused by this npm, 13 wants Node 22.
  lighthouse_dir=$HOME/.cache/hailstone/lighthouse
  [ -x "$lighthouse_dir/node_modules/.bin/lighthouse" ] ||
    npm install --prefix "$lighthouse_dir" --no-audit --no-fund -E lighthouse@12.2.3
  rm -f "$out/lighthouse.db"
  LEPTOS_SITE_ADDR=$addr HAILSTONE_STORE_PATH="$out/lighthouse.db" RUST_LOG=warn \
    "$CARGO_TARGET_DIR/release/server" &
  server_pid=$!
  for _ in $(seq 100); do curl -fs "http://$addr/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  : >"$out/lighthouse.txt"
  for run in 1 2 3; do
    CHROME_PATH=/usr/bin/chromium "$lighthouse_dir/node_modules/.bin/lighthouse" "http://$addr/" \
      --chrome-flags="--headless=new --no-sandbox --disable-gpu" --quiet \
      --only-categories=performance,accessibility --output=json --output-path="$out/lighthouse-$run.json"
    node -e '
      const r = require(process.argv[1]);
      const score = (c) => Math.round(r.categories[c].score * 100);
      const shown = (a) => r.audits[a].displayValue;
      console.log(`run ${process.argv[2]}: performance ${score("performance")}, accessibility ${score("accessibility")};`,
        `FCP ${shown("first-contentful-paint")}, LCP ${shown("largest-contentful-paint")},`,
        `TBT ${shown("total-blocking-time")}, TTI ${shown("interactive")}`);
    ' "$PWD/$out/lighthouse-$run.json" "$run" | tee -a "$out/lighthouse.txt"
  done
  stop_server
  exit 0
fi

if [ "$what" = wal ]; then
  # The write-ahead log's size every 10 s while 1,000 sessions step as fast
  # as possible for 10 minutes (every step batch is a checkpoint candidate).
  rm -f "$out/wal.db" "$out/wal.db-wal" "$out/wal.db-shm"
  LEPTOS_SITE_ADDR=$addr HAILSTONE_STORE_PATH="$out/wal.db" HAILSTONE_MAX_SESSIONS=100000 \
    RUST_LOG=warn \
    taskset -c 0 "$CARGO_TARGET_DIR/release/server" &
  server_pid=$!
  for _ in $(seq 100); do curl -fs "http://$addr/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  (
    echo "seconds wal_bytes db_bytes"
    start=$(date +%s)
    while kill -0 "$server_pid" 2>/dev/null; do
      echo "$(( $(date +%s) - start )) $(stat -c %s "$out/wal.db-wal" 2>/dev/null || echo 0) $(stat -c %s "$out/wal.db")"
      sleep 10
    done
  ) > "$out/wal-curve.txt" &
  sampler=$!
  taskset -c 1 "$CARGO_TARGET_DIR/release/loadgen" --addr $addr --sessions 1000 --interval 0 \
    --duration 600 --pid "$server_pid" | tee "$out/load-wal.txt"
  stop_server
  wait "$sampler" 2>/dev/null || true
  tail -5 "$out/wal-curve.txt"
  sort -n -k2 "$out/wal-curve.txt" | tail -1 | awk '{ print "largest log: " $2 " bytes at " $1 " s" }'
  exit 0
fi

if [ "$what" = cluster ]; then
  # Two nodes sharing one Redis behind haproxy (scripts/cluster.sh), all on
  # this machine with the load generator (no pinning: five processes share
  # two cores). Each run gets a fresh cluster: runs left running by a run
  # must not load the next.
  scripts/setup.sh cluster
  lb=3990
  redis_port=6499
  only_run=${2:-}
  # cluster_load NAME INTERVAL DURATION [loadgen flags...]; CLUSTER_NODES
  # (default 2) and CLUSTER_SENTINELS (default 1) in the environment.
  cluster_load() {
    local name=$1 interval=$2 duration=$3 nodes=${CLUSTER_NODES:-2}
    shift 3
    [ -z "$only_run" ] || [ "$only_run" = "$name" ] || return 0
    cluster_dir=/tmp/hailstone-bench-cluster-$name
    rm -rf "$cluster_dir"
    CLUSTER_DIR=$cluster_dir CLUSTER_PORT=$lb CLUSTER_NODES=$nodes CLUSTER_REDIS_PORT=$redis_port \
      HAILSTONE_MAX_SESSIONS=100000 RUST_LOG=${BENCH_RUST_LOG:-warn} scripts/cluster.sh >"$out/cluster-run.txt" 2>&1 &
    server_pid=$!
    for _ in $(seq 600); do [ -f "$cluster_dir/ready" ] && break; sleep 0.1; done
    [ -f "$cluster_dir/ready" ] || { cat "$out/cluster-run.txt"; exit 1; }
    local watch=() metrics=()
    for i in $(seq "$nodes"); do
      watch+=(--watch "n$i=$(cat "$cluster_dir/n$i.pid")")
      metrics+=(--metrics-addr "127.0.0.1:$((lb + i))")
    done
    for process in redis haproxy; do watch+=(--watch "$process=$(cat "$cluster_dir/$process.pid")"); done
    echo "== cluster-$name: 1000 sessions, interval ${interval} ms, ${duration} s, $nodes nodes," \
      "sentinels ${CLUSTER_SENTINELS:-1}" | tee "$out/cluster-$name.txt"
    # A fault of the run (below) starts with the measurement.
    [ -z "${fault:-}" ] || (sleep 3; "$fault" "$cluster_dir" | tee -a "$out/cluster-$name.txt") &
    local faulting=$!
    "$CARGO_TARGET_DIR/release/loadgen" --addr "127.0.0.1:$lb" --sessions 1000 \
      --interval "$interval" --duration "$duration" --resume \
      "${metrics[@]}" "${watch[@]}" "$@" | tee -a "$out/cluster-$name.txt" || true
    wait "$faulting" 2>/dev/null || true
    redis_memory | tee -a "$out/cluster-$name.txt"
    stop_server
    # Nodes a fault started again are not the cluster script's to stop.
    for pid_file in "$cluster_dir"/n*.pid; do kill "$(cat "$pid_file")" 2>/dev/null || true; done
    # The processes' logs (warnings and errors) are kept with the results.
    rm -rf "$out/cluster-$name-logs"
    mkdir -p "$out/cluster-$name-logs"
    cp "$cluster_dir"/*.log "$out/cluster-$name-logs/" 2>/dev/null || true
    rm -rf "$cluster_dir"
  }
  # Seconds since the `date +%s.%N` given.
  since() { awk -v now="$(date +%s.%N)" -v then="$1" 'BEGIN { printf "%.2f\n", now - then }'; }
  # Faults, each run 3 s into the measurement with the cluster's directory.
  # The primary (not its replica) killed, and how long the sentinels took
  # to promote the replica.
  kill_primary() {
    sleep 7
    local killed
    killed=$(date +%s.%N)
    kill -9 "$(cat "$1/redis.pid")"
    for _ in $(seq 300); do grep -q '+switch-master' "$1/sentinel-1.log" && break; sleep 0.1; done
    echo "primary_killed_at   $killed"
    echo "promoted_after_s    $(since "$killed")"
  }
  # Each node in turn told to stop (SIGTERM), waited for, and started
  # again with the environment it had.
  rolling_restart() {
    for pid_file in "$1"/n*.pid; do
      sleep 4
      local pid name started
      pid=$(cat "$pid_file")
      name=$(basename "$pid_file" .pid)
      mapfile -d '' vars <"/proc/$pid/environ"
      started=$(date +%s.%N)
      kill -TERM "$pid"
      while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
      echo "exit_s_$name           $(since "$started")"
      env -i "${vars[@]}" "$CARGO_TARGET_DIR/release/server" >>"$1/$name.log" 2>&1 &
      echo $! >"$pid_file"
    done
  }
  # Redis's memory per session: MEMORY USAGE of every key of every session
  # (state, log, lease), over the number of sessions.
  # (The primary is where the sentinels say, after a failover too.)
  redis_memory() {
    local keys sessions bytes port
    port=$(redis-cli -p $((redis_port + 2)) sentinel get-master-addr-by-name hailstone 2>/dev/null | sed -n 2p || true)
    port=${port:-$redis_port}
    keys=$(redis-cli -p "$port" --scan --pattern 'hs:{*')
    sessions=$(grep -c '}$' <<<"$keys" || true)
    bytes=$(sed 's/^/MEMORY USAGE /' <<<"$keys" | redis-cli -p "$port" | awk '{ s += $1 } END { print s }')
    echo "redis_sessions      $sessions"
    echo "redis_bytes         $bytes"
    echo "redis_per_session_b $((bytes / (sessions > 0 ? sessions : 1)))"
    redis-cli -p "$port" info memory | grep -E '^used_memory:' | tr -d '\r'
    # How the nodes' writes were grouped: each round of a lane ends with one
    # WAIT (with sentinels), each commit is one EVALSHA of the commit
    # script (leases and renewals are EVALSHAs too).
    redis-cli -p "$port" info commandstats | grep -E '^cmdstat_(evalsha|wait|publish):' |
      sed -E 's/^cmdstat_([a-z]+):calls=([0-9]+).*/redis_calls_\1 \2/' | tr -d '\r'
    # Reads of client sockets: about one per pipeline a client sent.
    redis-cli -p "$port" info stats | grep -E '^total_reads_processed:' |
      sed -E 's/^total_reads_processed:/redis_reads         /' | tr -d '\r'
  }
  cluster_load n1000 500 20
  # The cost of WAIT: the same on one Redis primary alone.
  CLUSTER_SENTINELS=0 cluster_load n1000-plain 500 20
  cluster_load fast1000 0 20
  # Failover under load: n1 is killed (SIGKILL) about 10 s into the
  # measurement. Its streams resume on n2 through the balancer; its runs
  # resume there once their lease lapses. The longest gap a run saw is the
  # time until every affected session stepped again (plus one interval).
  if [ -z "$only_run" ] || [ "$only_run" = failover ]; then
    ( sleep 12; kill -9 "$(cat /tmp/hailstone-bench-cluster-failover/n1.pid)" ) &
  fi
  cluster_load failover 500 25
  # The Redis primary killed under load: the replica promoted, every run
  # steps again, nothing acknowledged lost.
  fault=kill_primary cluster_load redis-failover 500 25
  # A rolling restart of three nodes under load.
  fault=rolling_restart CLUSTER_NODES=3 cluster_load rolling 500 25
  exit 0
fi

only=${2:-}
load() { if [ -z "$only" ] || [ "$only" = "$1" ]; then run_load "$@"; fi; }
load n100 100 500 20
load n1000 1000 500 20
load n10000 10000 500 20
n_max=$(( max_sessions < 20000 ? max_sessions : 20000 ))
load "n$n_max" "$n_max" 500 20 --ramp 4000
load fast1000 1000 0 20
# Many runs per session: 125 sessions of 8 runs each (each run its own
# stream), against n1000's 1,000 sessions of one run.
BENCH_ENV="HAILSTONE_LIVE_RUNS=8 ${BENCH_ENV:-}" load runs8-n1000 1000 500 20 --runs 8
# The same over shared HTTP/2 connections (100 browsers to a connection, as
# behind a multiplexing proxy): not bounded by one socket per browser.
load h2-n1000 1000 500 20 --http2 100
load h2-n10000 10000 500 20 --http2 100
load h2-n20000 20000 500 20 --http2 100 --ramp 4000
load h2-fast1000 1000 0 20 --http2 100
load one-session-fast 1 0 10 --start "$(printf '9%.0s' $(seq 1000))"
# Machine words: 77031 takes 350 steps; the run restarts each time it ends.
load one-session-words 1 0 10 --start 77031

# Time from navigation to a hydrated page, against the release server.
if [ -z "$only" ]; then
  scripts/setup.sh test >/dev/null
  LEPTOS_SITE_ADDR=$addr HAILSTONE_STORE_PATH=":memory:" "$CARGO_TARGET_DIR/release/server" &
  server_pid=$!
  for _ in $(seq 100); do curl -fs "http://$addr/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  (cd end2end && node bench/hydration-time.mjs "http://$addr/" 7) | tee "$out/hydration.txt"
  # Rows in the page while the list shows a 30,579-value run.
  (cd end2end && node bench/dom-rows.mjs "http://$addr/") | tee "$out/dom-rows.txt"
  stop_server
  # A page of values far into a 1,000-digit run.
  cargo run --release -p server --example pages -- \
    --server "$CARGO_TARGET_DIR/release/server" | tee "$out/pages.txt"
fi

# Size of what a browser downloads (the names carry their content's hash;
# the build's own compressed copies are what the server sends).
size() { wc -c <"$(ls target/site/pkg/hailstone.*."$1$2")"; }
echo "gzip bytes (the build's copies): wasm $(size wasm .gz), js $(size js .gz), css $(size css .gz);" \
  "brotli bytes: wasm $(size wasm .br), js $(size js .br), css $(size css .br);" \
  "wasm+js gzip $(($(size wasm .gz) + $(size js .gz))), brotli $(($(size wasm .br) + $(size js .br)))" | tee "$out/size.txt"

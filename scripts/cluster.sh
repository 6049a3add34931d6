#!/usr/bin/env bash
# A local cluster: Redis without a single point of failure (a primary, its
# replica and three sentinels), Hailstone nodes sharing it, and haproxy in
# front of them (round robin, no stickiness). Runs until Ctrl-C (or
# SIGTERM), then stops everything it started.
#
#   scripts/cluster.sh            # what `make cluster` runs: 3 nodes on
#                                 # 127.0.0.1:3001-3003, the balancer on :3000
#
# Settings (environment):
#   CLUSTER_PORT        the balancer's port (default 3000); node i listens on
#                       CLUSTER_PORT + i
#   CLUSTER_NODES       how many nodes (default 3)
#   CLUSTER_REDIS_PORT  the Redis primary's port (default 6390); its replica
#                       listens on the next port, the three sentinels on the
#                       three after
#   CLUSTER_SENTINELS   1 (default): primary, replica and sentinels, which the
#                       nodes find the primary through; 0: one redis-server
#                       alone, named to the nodes by its URL
#   CLUSTER_BIN         the server binary (default: the release build)
#   CLUSTER_PIN         set: node i runs on core (i - 1) mod cores alone
#                       (taskset), so nodes stand for machines of one core
#   CLUSTER_DIR         where data, logs and pid files go (default: a new
#                       temporary directory); <name>.pid per process
# Any HAILSTONE_* variable set is passed on to every node.
set -euo pipefail
cd "$(dirname "$0")/.."

port=${CLUSTER_PORT:-3000}
nodes=${CLUSTER_NODES:-3}
redis_port=${CLUSTER_REDIS_PORT:-6390}
with_sentinels=${CLUSTER_SENTINELS:-1}
target=${CARGO_TARGET_DIR:-$HOME/.cache/hailstone/target}
bin=${CLUSTER_BIN:-$target/release/server}
dir=${CLUSTER_DIR:-$(mktemp -d /tmp/hailstone-cluster.XXXXXX)}
mkdir -p "$dir"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

pids=()
stop() {
  trap - INT TERM EXIT
  say "stopping the cluster"
  # Stopped (SIGSTOP) processes are woken so they can die.
  for pid in "${pids[@]}"; do kill -CONT "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop INT TERM EXIT

# Polls until `$1` answers, for at most 30 s.
wait_http() {
  for _ in $(seq 300); do
    curl -fs -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "$1 did not answer within 30 s; see the logs in $dir" >&2
  exit 1
}

[ -x "$bin" ] || { echo "no server binary at $bin: run 'cargo leptos build --release --precompress' first" >&2; exit 1; }

# Polls until redis-cli on port `$1` answers `$2` to the rest, for 30 s.
wait_redis() {
  local port=$1 want=$2
  shift 2
  for _ in $(seq 300); do
    [ "$(redis-cli -p "$port" "$@" 2>/dev/null)" = "$want" ] && return 0
    sleep 0.1
  done
  echo "redis on port $port did not answer $want within 30 s; see the logs in $dir" >&2
  exit 1
}

# appendonly: a restart keeps what was committed; noeviction: Redis never
# drops a session or lease to make room (writes fail instead).
redis() {
  local name=$1 port=$2
  shift 2
  mkdir -p "$dir/$name"
  redis-server --port "$port" --bind 127.0.0.1 --save '' \
    --appendonly yes --appendfsync everysec --maxmemory-policy noeviction \
    --dir "$dir/$name" --logfile "$dir/$name.log" "$@" &
  pids+=($!); echo $! > "$dir/$name.pid"
  wait_redis "$port" PONG ping
}

say "redis-server primary on 127.0.0.1:$redis_port (data and logs in $dir)"
# A replica is sent its first copy at once, not after waiting for others.
redis redis "$redis_port" --repl-diskless-sync-delay 0
node_env=(HAILSTONE_REDIS_URL="redis://127.0.0.1:$redis_port/")
if [ "$with_sentinels" = 1 ]; then
  replica_port=$((redis_port + 1))
  say "its replica on 127.0.0.1:$replica_port"
  redis replica "$replica_port" --replicaof 127.0.0.1 "$redis_port"
  # Until it has its first copy, no change could be confirmed.
  for _ in $(seq 300); do
    redis-cli -p "$replica_port" info replication | grep -q '^master_link_status:up' && break
    sleep 0.1
  done
  sentinels=""
  for i in 1 2 3; do
    sentinel_port=$((redis_port + 1 + i))
    say "sentinel $i on 127.0.0.1:$sentinel_port"
    cat > "$dir/sentinel-$i.conf" <<EOF
port $sentinel_port
bind 127.0.0.1
dir $dir
logfile $dir/sentinel-$i.log
sentinel monitor hailstone 127.0.0.1 $redis_port 2
sentinel down-after-milliseconds hailstone ${CLUSTER_DOWN_AFTER_MS:-1000}
sentinel failover-timeout hailstone 10000
sentinel parallel-syncs hailstone 1
EOF
    redis-sentinel "$dir/sentinel-$i.conf" &
    pids+=($!); echo $! > "$dir/sentinel-$i.pid"
    sentinels+="${sentinels:+,}127.0.0.1:$sentinel_port"
  done
  # A failover needs every sentinel to know the replica and the other two.
  for i in 1 2 3; do
    sentinel_port=$((redis_port + 1 + i))
    for _ in $(seq 300); do
      others=$(redis-cli -p "$sentinel_port" sentinel sentinels hailstone 2>/dev/null | grep -cx name || true)
      replicas=$(redis-cli -p "$sentinel_port" sentinel replicas hailstone 2>/dev/null | grep -A1 -x flags | grep -cx slave || true)
      [ "$others" = 2 ] && [ "$replicas" = 1 ] && break
      sleep 0.1
    done
    [ "$others" = 2 ] && [ "$replicas" = 1 ] || { echo "sentinel $i does not see the replica and the others; see $dir" >&2; exit 1; }
  done
  node_env=(HAILSTONE_REDIS_SENTINELS="$sentinels" HAILSTONE_REDIS_SENTINEL_MASTER=hailstone)
fi

servers=""
for i in $(seq "$nodes"); do
  node_port=$((port + i))
  say "node n$i on 127.0.0.1:$node_port"
  pin=()
  [ -z "${CLUSTER_PIN:-}" ] || pin=(taskset -c "$(( (i - 1) % $(nproc) ))")
  env "${node_env[@]}" \
    LEPTOS_SITE_ADDR="127.0.0.1:$node_port" \
    HAILSTONE_NODE_ID="n$i" \
    HAILSTONE_CLIENT_ADDRESS_HEADER="${HAILSTONE_CLIENT_ADDRESS_HEADER:-x-forwarded-for}" \
    "${pin[@]}" "$bin" > "$dir/n$i.log" 2>&1 &
  pids+=($!); echo $! > "$dir/n$i.pid"
  servers+="  server n$i 127.0.0.1:$node_port check inter 500 fall 1 rise 1"$'\n'
done
for i in $(seq "$nodes"); do wait_http "http://127.0.0.1:$((port + i))/healthz"; done

cat > "$dir/haproxy.cfg" <<EOF
global
  # Two descriptors per connection (client and node): within the
  # open-file limit of 20,000 here.
  maxconn 9000
defaults
  mode http
  option forwardfor
  # Each event of a stream is sent at once: without it, small writes wait
  # for the client's acknowledgement (Nagle), 200 ms here.
  option http-no-delay
  # A refused connection (a stopping node closed its port) is tried again,
  # on another node, after min(this, 1 s): not a second's pause.
  timeout connect 250ms
  # Event streams are long: the nodes send keep-alives every 15 s.
  timeout client 1h
  timeout server 1h
  # A request to a node that died or is stopping goes to another: a
  # refused connection, or one closed before any answer (a stopping node
  # closes its idle kept-alive connections), means the request was not
  # served, so even a POST is safe to send again.
  retries 2
  option redispatch 1
  retry-on conn-failure empty-response
frontend hailstone
  bind 127.0.0.1:$port
  default_backend nodes
backend nodes
  balance roundrobin
  option httpchk GET /healthz
$servers
EOF
say "haproxy on 127.0.0.1:$port, round robin over $nodes nodes"
haproxy -f "$dir/haproxy.cfg" > "$dir/haproxy.log" 2>&1 &
pids+=($!); echo $! > "$dir/haproxy.pid"
wait_http "http://127.0.0.1:$port/healthz"
touch "$dir/ready"
say "ready: http://127.0.0.1:$port (Ctrl-C stops everything)"
# Until told to stop: a node killed by a fault test does not end the cluster.
sleep infinity &
pids+=($!)
wait $! || true

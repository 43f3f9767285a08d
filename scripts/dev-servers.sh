#!/usr/bin/env bash
# Starts etcd and nats-server on loopback for development, in the
# foreground; Ctrl-C stops both. Data lives in a temporary directory.
#
#   scripts/dev-servers.sh      # etcd on 2379, NATS on 4222 (monitoring on 8222)
#   ROTOR_DEV_ETCD_PORT=2479 ROTOR_DEV_NATS_PORT=4322 ROTOR_DEV_NATS_MONITOR_PORT=8322 scripts/dev-servers.sh
#
# The ports' variables are not ETCD_*: etcd reads every ETCD_* variable of
# its environment as a flag.
set -euo pipefail
etcd_port=${ROTOR_DEV_ETCD_PORT:-2379}
nats_port=${ROTOR_DEV_NATS_PORT:-4222}
monitor_port=${ROTOR_DEV_NATS_MONITOR_PORT:-8222}
for bin in etcd nats-server; do
  command -v "$bin" >/dev/null || { echo "$bin is missing: sudo apt-get install -y etcd-server nats-server" >&2; exit 1; }
done
# A port something already listens on is refused before anything starts:
# the servers' own errors would come only after the script had looked up.
for port in "$etcd_port" "$((etcd_port + 1))" "$nats_port" "$monitor_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "127.0.0.1:$port is taken: is another copy running? Set ROTOR_DEV_ETCD_PORT, ROTOR_DEV_NATS_PORT or ROTOR_DEV_NATS_MONITOR_PORT" >&2
    exit 1
  fi
done
data=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$data"' EXIT

# Waits until something listens on `port`, or fails when `pid` died first
# (a port already taken, say).
ready() {
  local name=$1 port=$2 pid=$3
  for _ in $(seq 200); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited before it listened on 127.0.0.1:$port; is the port taken? (see $data/$name.log)" >&2
      cat "$data/$name.log" >&2 || true
      exit 1
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "$name did not listen on 127.0.0.1:$port within 10 s" >&2
  exit 1
}

# etcd 3.4 honours --log-level only with the zap logger.
env $(env | grep -o '^ETCD_[A-Z_]*' | sed 's/^/-u /') etcd --name dev --data-dir "$data/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$((etcd_port + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
  --initial-cluster "dev=http://127.0.0.1:$((etcd_port + 1))" --logger zap --log-level warn >"$data/etcd.log" 2>&1 &
etcd_pid=$!
nats-server -a 127.0.0.1 -p "$nats_port" -m "$monitor_port" >"$data/nats.log" 2>&1 &
nats_pid=$!
ready etcd "$etcd_port" "$etcd_pid"
ready nats "$nats_port" "$nats_pid"
ready nats "$monitor_port" "$nats_pid"
echo "etcd on http://127.0.0.1:$etcd_port, NATS on nats://127.0.0.1:$nats_port (monitoring on $monitor_port); Ctrl-C stops both"
echo "export ROTOR_NATS_URL=nats://127.0.0.1:$nats_port ROTOR_ETCD_ENDPOINTS=http://127.0.0.1:$etcd_port"
wait -n
echo "a server stopped; stopping the other" >&2
exit 1

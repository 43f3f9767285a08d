#!/usr/bin/env bash
# Starts etcd and nats-server on loopback for development, in the
# foreground; Ctrl-C stops both. Data lives in a temporary directory.
#
#   scripts/dev-servers.sh            # etcd on 2379, NATS on 4222 (monitoring on 8222)
#   export ROTOR_NATS_URL=nats://127.0.0.1:4222 ROTOR_ETCD_ENDPOINTS=http://127.0.0.1:2379
set -euo pipefail
ETCD_PORT=${ETCD_PORT:-2379}
NATS_PORT=${NATS_PORT:-4222}
for bin in etcd nats-server; do
  command -v "$bin" >/dev/null || { echo "$bin is missing: sudo apt-get install -y etcd-server nats-server" >&2; exit 1; }
done
data=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$data"' EXIT
etcd --name dev --data-dir "$data/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
  --initial-cluster "dev=http://127.0.0.1:$((ETCD_PORT + 1))" --log-level warn &
nats-server -a 127.0.0.1 -p "$NATS_PORT" -m 8222 &
echo "etcd on http://127.0.0.1:$ETCD_PORT, NATS on nats://127.0.0.1:$NATS_PORT; Ctrl-C stops both"
echo "export ROTOR_NATS_URL=nats://127.0.0.1:$NATS_PORT ROTOR_ETCD_ENDPOINTS=http://127.0.0.1:$ETCD_PORT"
wait

#!/usr/bin/env bash
# Checks scripts/dev-servers.sh: it comes up on the ports it is given, keeps
# ETCD_* variables of its caller away from etcd, and a second copy on ports
# already taken fails at once with a message instead of printing its URLs.
set -euo pipefail
cd "$(dirname "$0")/.."

base=$(( 20000 + RANDOM % 20000 ))
export ROTOR_DEV_ETCD_PORT=$base ROTOR_DEV_NATS_PORT=$((base + 2)) ROTOR_DEV_NATS_MONITOR_PORT=$((base + 3))
export ETCD_PORT=not-for-etcd
out=$(mktemp)
scripts/dev-servers.sh >"$out" 2>&1 &
first=$!
# The script's own status, not that of the copy it stops.
trap 'rc=$?; kill $first 2>/dev/null; wait $first 2>/dev/null || true; rm -f "$out"; exit $rc' EXIT
for _ in $(seq 200); do
  grep -q '^export ROTOR_NATS_URL' "$out" && break
  kill -0 $first 2>/dev/null || { cat "$out" >&2; echo "dev-servers.sh exited" >&2; exit 1; }
  sleep 0.05
done
grep -q "^export ROTOR_NATS_URL=nats://127.0.0.1:$ROTOR_DEV_NATS_PORT ROTOR_ETCD_ENDPOINTS=http://127.0.0.1:$ROTOR_DEV_ETCD_PORT$" "$out" \
  || { cat "$out" >&2; echo "dev-servers.sh did not come up on the given ports" >&2; exit 1; }
for pid in $(pgrep -x etcd); do
  # An etcd of another run may be exiting as it is read: skip it.
  if tr '\0' '\n' 2>/dev/null </proc/"$pid"/environ | grep -q '^ETCD_PORT='; then
    echo "etcd was started with the caller's ETCD_PORT in its environment" >&2
    exit 1
  fi
done
if second=$(timeout 20 scripts/dev-servers.sh 2>&1); then
  echo "a second dev-servers.sh on taken ports succeeded" >&2
  exit 1
fi
if ! printf '%s\n' "$second" | grep -q 'is taken'; then
  printf '%s\n' "$second" >&2
  echo "a second dev-servers.sh on taken ports should say the port is taken" >&2
  exit 1
fi
if printf '%s\n' "$second" | grep -q '^export ROTOR_NATS_URL'; then
  echo "a second dev-servers.sh printed URLs of servers it did not start" >&2
  exit 1
fi
echo "dev-servers.sh: given ports, no ETCD_* leak, a taken port refused"

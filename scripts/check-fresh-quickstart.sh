#!/usr/bin/env bash
# The README's first command on a machine with Rust alone: builds and runs
# the quickstart in a fresh target directory with protoc out of reach, then
# checks that a program asking for etcd without the `etcd` feature is told
# what to enable.
set -euo pipefail
cd "$(dirname "$0")/.."

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# protoc usually sits in /usr/bin beside the C toolchain, so it cannot be left
# off PATH: shadow it with one that fails, and point PROTOC nowhere.
mkdir "$scratch/bin"
printf '#!/bin/sh\necho "protoc is out of reach in this check" >&2\nexit 127\n' > "$scratch/bin/protoc"
chmod +x "$scratch/bin/protoc"
export PATH="$scratch/bin:$PATH" PROTOC=/nonexistent CARGO_TARGET_DIR="$scratch/target" RUST_BACKTRACE=0

start=$(date +%s)
out=$(cargo run --quiet --example quickstart)
echo "quickstart: clean build and run without protoc in $(( $(date +%s) - start )) s"
printf '%s\n' "$out"
instances=$(printf '%s\n' "$out" | grep -o 'answered by instance [0-9a-f]*' | sort -u | wc -l)
if [ "$instances" -lt 2 ]; then
  echo "the quickstart should print answers from two instances; it printed:" >&2
  printf '%s\n' "$out" >&2
  exit 1
fi

if err=$(ROTOR_NATS_URL=nats://127.0.0.1:1 ROTOR_ETCD_ENDPOINTS=http://127.0.0.1:1 \
  cargo run --quiet --example quickstart 2>&1); then
  echo "the quickstart ran with etcd asked for but not built in" >&2
  exit 1
fi
if ! printf '%s\n' "$err" | grep -q 'features = \["etcd"\]'; then
  echo "asking for etcd without the feature should say what to enable; it said:" >&2
  printf '%s\n' "$err" >&2
  exit 1
fi
echo "etcd asked for without the feature: refused with the feature to enable"

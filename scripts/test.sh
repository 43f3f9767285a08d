#!/usr/bin/env bash
# Installs what the tests need when it is missing, then runs every test:
# unit, integration (against real etcd and nats-server), compile-pass and
# compile-fail cases, doc tests, the examples, and the book.
set -euo pipefail
cd "$(dirname "$0")/.."
# One run of every test gains nothing from incremental caches, and they took
# a third of its disk (7 GB). Set CARGO_INCREMENTAL=1 to keep them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}"
fi
if ! command -v mdbook >/dev/null 2>&1; then
  echo "installing mdbook"
  cargo install mdbook --locked --quiet
fi

# The README's first command, as on a machine with Rust alone: a fresh target
# directory and no protoc.
scripts/check-fresh-quickstart.sh

# Everything else runs with etcd discovery built in (the `etcd` feature).
# Benchmarks print figures and are run on purpose (`cargo bench`); here they
# are only built, so that they cannot rot.
cargo build --workspace --features etcd --benches --quiet
# Another crate of a program may turn on prometheus's `protobuf` feature,
# which changes prometheus's API: the runtime must build either way.
cargo check --quiet -p rotor-runtime --features etcd,prometheus/protobuf
cargo test --workspace --features etcd
# Published JSON Schemas are an opt-in feature, tested on their own.
cargo test --features etcd,schemas --test describe
# A program that only calls a component links its contract, not its server:
# the contract example's client has no tokenizer-server in its tree.
client_tree=$(cargo tree -p tokenizer-client --prefix none -e normal,build)
grep -q '^tokenizer-contract ' <<<"$client_tree" || { echo "tokenizer-client should depend on tokenizer-contract"; exit 1; }
if grep -q '^tokenizer-server ' <<<"$client_tree"; then
  echo "tokenizer-client depends on tokenizer-server: a caller must need the contract alone" >&2
  exit 1
fi
scripts/check-dev-servers.sh
# The examples of the first week run as a user would run them, built with
# the features the tests resolved (`cargo run -p rotor` would build the
# runtime once more).
cargo build --quiet --workspace --examples --features etcd
for example in two_components timeouts streaming gateway fan_out state; do
  "${CARGO_TARGET_DIR:-target}/debug/examples/$example"
done
mdbook build book

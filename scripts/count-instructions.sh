#!/usr/bin/env bash
# Instructions per call of each row of the direct benchmark, counted by
# callgrind rather than timed: the same binary and inputs give the same
# count whatever else the machine does. Each row runs twice, with N and 3N
# sequential 64-byte calls (`--only ROW N`), and the difference divided by
# 2N is the row's cost per call, setup taken out. Counts cover this process
# alone (caller and server both live in it), not etcd or nats-server, and
# user space alone: a system call counts as the instructions that make it.
#
#   scripts/count-instructions.sh [N] [ROW...]   # default 1000, every row
#
# Needs valgrind (Debian: valgrind). Leaves each row's larger profile in
# target/callgrind/ROW.out for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind: apt-get install -y valgrind" >&2; exit 1; }
n="${1:-1000}"
shift || true
rows=("$@")
[ ${#rows[@]} -gt 0 ] || rows=(raw-tcp direct raw-nats nats-plane msgpack)

export RUST_BACKTRACE=0
bin=$(cargo bench --features etcd --bench direct --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
out="${CARGO_TARGET_DIR:-target}/callgrind"
mkdir -p "$out"

total() { # ROW CALLS FILE: the instructions of one run
  valgrind --tool=callgrind --callgrind-out-file="$3" "$bin" --only "$1" "$2" >/dev/null 2>&1
  sed -n 's/^summary: //p' "$3"
}

printf '%-12s %16s\n' row 'instructions/call'
for row in "${rows[@]}"; do
  small=$(total "$row" "$n" "$out/$row.small.out")
  large=$(total "$row" $((3 * n)) "$out/$row.out")
  printf '%-12s %16d\n' "$row" $(((large - small) / (2 * n)))
done

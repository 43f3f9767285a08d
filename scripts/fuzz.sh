#!/usr/bin/env bash
# Fuzzes the decoders a stranger's bytes reach, one target per family
# (fuzz/fuzz_targets/): envelope, batch, stream_control, headers. Opt-in, not
# part of scripts/test.sh: it needs the nightly toolchain and takes minutes.
#
#   scripts/fuzz.sh              every target for 60 s
#   scripts/fuzz.sh 300          every target for 300 s
#   scripts/fuzz.sh 30 batch     one target for 30 s
#
# A crash stops its target and leaves the input in fuzz/artifacts/<target>/;
# `cargo +nightly fuzz run <target> <file>` replays it. Each target's corpus
# grows in fuzz/corpus/<target>/ from run to run (neither is kept in git).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(envelope batch stream_control headers)

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "cargo fuzz needs the nightly toolchain: rustup toolchain install nightly" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi

# Inputs up to 4 KiB; no single allocation over 64 MiB (the targets check a
# far tighter bound themselves) and no more than 2 GiB in all.
failed=()
for target in "${targets[@]}"; do
  echo "== $target: ${seconds}s"
  log="fuzz/artifacts/$target.log"
  mkdir -p fuzz/artifacts
  status=0
  cargo +nightly fuzz run "$target" -- \
    -max_total_time="$seconds" -max_len=4096 -malloc_limit_mb=64 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^#[0-9]+.*(INITED|DONE)|^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "$log" || true
  if [ "$status" -eq 0 ]; then
    echo "== $target: $(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}') runs, no crash"
  else
    grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" || tail -20 "$log"
    echo "== $target: FAILED with status $status (log: $log)"
    failed+=("$target")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed: ${failed[*]}" >&2
  exit 1
fi

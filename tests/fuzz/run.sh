#!/usr/bin/env bash
# Builds the libFuzzer targets and runs each for a while, from a seed corpus
# of real file names and files (tests/fuzz/seeds), printing one TAP line per
# target.  Crashes are kept in build/fuzz/ and turn into tests.
#   tests/fuzz/run.sh [seconds per target, default 10]
set -uo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
out=build/fuzz
mkdir -p "$out"
src=$(ls common/*.c)
status=0
for t in names sections plan; do
  if ! clang -std=c11 -D_POSIX_C_SOURCE=200809L -g -O1 -Wall -Wextra -Werror \
       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Icommon \
       -o "$out/fuzz_$t" "tests/fuzz/fuzz_$t.c" $src -lz -larchive 2> "$out/build_$t.log"; then
    echo "not ok - fuzz: $t builds"; cat "$out/build_$t.log"; status=1; continue
  fi
  mkdir -p "$out/corpus_$t"
  if "$out/fuzz_$t" -max_total_time="$secs" -artifact_prefix="$out/crash_$t-" \
       "$out/corpus_$t" "tests/fuzz/seeds/$t" > "$out/run_$t.log" 2>&1; then
    echo "ok - fuzz: $t ($(grep -o 'Done [0-9]* runs' "$out/run_$t.log" | head -1) in ${secs}s)"
  else
    echo "not ok - fuzz: $t"; tail -30 "$out/run_$t.log"; status=1
  fi
done
exit $status

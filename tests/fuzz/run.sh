#!/usr/bin/env bash
# Runs each fuzz target of a METAGRAD_FUZZ build for SECONDS (or 10^6 inputs, whichever comes
# first), one after another, over its seed corpus. New inputs go to BUILD/fuzz-corpus/<target>,
# crashes to BUILD/fuzz-artifacts/<target>/; the script fails if any target crashed.
# Usage: tests/fuzz/run.sh BUILD SECONDS [target...]   (default: every target)
set -uo pipefail
build=$1 seconds=$2
shift 2
src=$(cd "$(dirname "$0")" && pwd)
targets=("$@")
((${#targets[@]})) || targets=(graph_text checkpoint model_description zip png idx oneshot_runs)
status=0
for t in "${targets[@]}"; do
  mkdir -p "$build/fuzz-corpus/$t" "$build/fuzz-artifacts/$t"
  # Limits: a reader must refuse a huge declared size, not try it (malloc_limit); a slow input is a finding too.
  "$build/fuzz_$t" "$build/fuzz-corpus/$t" "$src/corpus/$t" -max_total_time="$seconds" -runs=1000000 \
    -rss_limit_mb=2560 -malloc_limit_mb=1024 -timeout=20 -print_final_stats=1 \
    -artifact_prefix="$build/fuzz-artifacts/$t/" >"$build/fuzz-$t.log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$build/fuzz-$t.log" | grep -o '[0-9]*$')
  secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$build/fuzz-$t.log" | grep -o 'in [0-9]*' | grep -o '[0-9]*')
  echo "fuzz_$t: exit $rc, ${runs:-?} executions, ${secs:-?} s (log $build/fuzz-$t.log)"
  ((rc == 0)) || status=1
done
exit $status

#!/usr/bin/env bash
# Run benchmarks on two revisions of the library, interleaved (base, head, base, head, ...), so
# that both see the same machine state. Each benchmark script is taken from the revision under
# test when it has it, else from this checkout (a benchmark newer than the base still times the
# base's library).
#
#   bash benchmarks/compare_revisions.sh BASE_REV OUT_DIR [BENCH ...]
#
# BENCH names a benchmarks/bench_<BENCH>.py (default: all of them). Outputs: OUT_DIR/base.<BENCH>.md
# and OUT_DIR/head.<BENCH>.md (each script's report), OUT_DIR/<label>.<BENCH>.out (its console
# output) and OUT_DIR/log (start and end times, exit codes). HEAD is this checkout's working tree.
set -euo pipefail

if [ $# -lt 2 ]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
base_rev=$1
out=$(mkdir -p "$2" && cd "$2" && pwd)
shift 2
head_tree=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -gt 0 ]; then
  benches=("$@")
else
  benches=()
  for f in "$head_tree"/benchmarks/bench_*.py; do
    b=$(basename "$f" .py)
    benches+=("${b#bench_}")
  done
fi

base_tree=$(mktemp -d /tmp/pytorch_hmm_base.XXXXXX)
trap 'git -C "$head_tree" worktree remove --force "$base_tree" >/dev/null 2>&1 || rm -rf "$base_tree"' EXIT
git -C "$head_tree" worktree add --detach "$base_tree" "$base_rev" >/dev/null

run_one() {  # label tree bench
  local label=$1 tree=$2 bench=$3 script
  script=$tree/benchmarks/bench_$bench.py
  [ -f "$script" ] || script=$head_tree/benchmarks/bench_$bench.py
  echo "=== $label $bench $(date +%T)" | tee -a "$out/log"
  local rc=0 args=(--markdown "$out/$label.$bench.md") report=$out/$label.$bench.out
  case $bench in  # the two scripts that print their report instead of writing a file
    hsmm) args=(--markdown); report=$out/$label.$bench.md ;;
    issue410) args=(); report=$out/$label.$bench.md ;;
  esac
  (cd "$tree" && PYTHONPATH="$tree/src" python "$script" "${args[@]}" >"$report" 2>&1) || rc=$?
  echo "rc=$rc $(date +%T)" | tee -a "$out/log"
}

for bench in "${benches[@]}"; do
  run_one base "$base_tree" "$bench"
  run_one head "$head_tree" "$bench"
done
echo "done $(date +%T): reports in $out" | tee -a "$out/log"

#!/usr/bin/env bash
# Model-checks model/idempotency.pml with Spin (docs/model.md):
# 1. the model of src/ as it is: every interleaving, no assertion may fail;
# 2. each known-bad rule (a mutation): Spin must find a counterexample.
# Fails when the model is violated, when the search is incomplete, or when a
# mutation goes unnoticed. Needs spin and a C compiler (.ci/run installs spin).
# TRAILS=dir keeps each counterexample, replayed, in dir.
set -euo pipefail
cd "$(dirname "$0")/.."
model="$PWD/model/idempotency.pml"

for tool in spin cc; do
  command -v "$tool" >/dev/null || { echo "check-model: $tool not found (apt-get install -y spin gcc)" >&2; exit 2; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$model" "$work/"
cd "$work"

# $1: a name, $2: extra pan flags, then spin's -D flags. Prints pan's report; sets $errors.
verify() {
  local name="$1" shortest="$2"; shift 2
  rm -f pan pan.* idempotency.pml.trail
  spin "$@" -a idempotency.pml >/dev/null
  # Exhaustive search (no BITSTATE): COLLAPSE only compresses the stored states.
  # For a mutation, -i with REACH looks for the shortest counterexample.
  cc -O2 -w -DSAFETY -DCOLLAPSE -DMEMLIM=2048 ${shortest:+-DREACH} -o pan pan.c
  ./pan -m100000 $shortest >"report-$name.txt" 2>&1 || true
  errors="$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "report-$name.txt")"
  { grep -m1 'assertion violated' "report-$name.txt" || true; grep -E 'states, stored|errors:|elapsed' "report-$name.txt"; } | sed "s/^/  [$name] /"
}

fail=0
echo "== the model of src/ (3 clients, 2 (scope, key) rows, crashes, sweep, TTL)"
verify model ""
if [ "${errors:-x}" != 0 ]; then
  echo "check-model: the model of src/ violates a property; trail:" >&2
  spin -t idempotency.pml | grep -E 'MSC|Error|assert' >&2 || true
  fail=1
elif grep -q 'Search not completed' report-model.txt; then
  echo "check-model: the search did not complete (memory bound): raise -DMEMLIM or shrink the model" >&2
  fail=1
fi

for mutation in MUT_STARTED_NO_LEASE MUT_EXPIRY_FROM_CLAIM; do
  echo "== mutation $mutation: Spin must find a counterexample"
  verify "$mutation" -i "-D$mutation"
  if [ "${errors:-0}" = 0 ]; then
    echo "check-model: Spin found no counterexample for $mutation: the model has lost its teeth" >&2
    fail=1
  else
    spin "-D$mutation" -t idempotency.pml | grep -E 'MSC|Error|assert' | sed 's/^ *MSC: /  /' >"trail-$mutation.txt" || true
    cat "trail-$mutation.txt"
    if [ -n "${TRAILS:-}" ]; then mkdir -p "$TRAILS" && cp "trail-$mutation.txt" "$TRAILS/"; fi
  fi
done

[ "$fail" = 0 ] && echo "check-model: ok"
exit "$fail"

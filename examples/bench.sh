#!/usr/bin/env bash
# Does the wavelet structure help on your data? Train a baseline and a Haar model on the same
# batches and report the speed-up in steps to the baseline's final validation loss.
#
#   examples/bench.sh [SRC] [OUT]
#
# SRC: text files or a folder (default: the bundled Milton corpus). OUT: default
# examples-out/bench. WGPT_EXAMPLE_STEPS sets the steps of each run (default 300); the claim
# needs more (thousands, several seeds: --seeds 1,2,3) to be judged.
set -euo pipefail
SRC=${1:-}
OUT=${2:-examples-out/bench}
STEPS=${WGPT_EXAMPLE_STEPS:-300}
# WGPT_EXAMPLE_TINY=1: a minimal model and batches, to check that the example runs (the tests do).
MODEL=() TRAIN=()
if [[ -n ${WGPT_EXAMPLE_TINY:-} ]]; then
    MODEL=(--layers 1 --heads 2 --width 32 --ffn 64 --context 64)
    TRAIN=(--batch-size 4 --eval-batches 1 --warmup 2 --lr 1e-2)
fi

wgpt prepare text ${SRC:+"$SRC"} --out "$OUT/data" --quiet
wgpt bench --data "$OUT/data" --variants baseline,haar --steps "$STEPS" "${MODEL[@]}" "${TRAIN[@]}" --eval-interval $(( STEPS >= 50 ? 25 : (STEPS + 1) / 2 )) \
    --out "$OUT/bench" --quiet
echo "summary: $OUT/bench/summary.md; page: $OUT/bench/report.html"

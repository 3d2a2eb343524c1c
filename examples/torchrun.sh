#!/usr/bin/env bash
# Two processes on one machine with torchrun (DistributedDataParallel, gloo on CPUs): the same
# run as one process with the same global --batch-size, each process taking half of each batch.
#
#   examples/torchrun.sh [SRC] [OUT]
#
# SRC: text files or a folder (default: the bundled Milton corpus). OUT: default
# examples-out/torchrun. WGPT_EXAMPLE_STEPS sets the steps (default 300). For GPUs, replace
# --device cpu by --device cuda and 2 by the number of GPUs (docs/distributed.md).
set -euo pipefail
SRC=${1:-}
OUT=${2:-examples-out/torchrun}
STEPS=${WGPT_EXAMPLE_STEPS:-300}
# WGPT_EXAMPLE_TINY=1: a minimal model and batches, to check that the example runs (the tests do).
MODEL=() TRAIN=()
if [[ -n ${WGPT_EXAMPLE_TINY:-} ]]; then
    MODEL=(--layers 1 --heads 2 --width 32 --ffn 64 --context 64)
    TRAIN=(--batch-size 4 --eval-batches 1 --warmup 2 --lr 1e-2)
fi

wgpt prepare text ${SRC:+"$SRC"} --out "$OUT/data" --quiet
# torchrun gives each process one thread unless OMP_NUM_THREADS says otherwise.
torchrun --standalone --nproc_per_node=2 -m wgpt train --device cpu --data "$OUT/data" --wavelet \
    --steps "$STEPS" "${MODEL[@]}" "${TRAIN[@]}" --out "$OUT/run" --overwrite --quiet
wgpt sample --ckpt "$OUT/run/best.pt" --tokens 200 --out "$OUT/sample.txt" --quiet
echo "run: $OUT/run (metrics.jsonl, best.pt); sample: $OUT/sample.txt"

#!/usr/bin/env bash
# Text from raw files to samples: prepare (byte-level BPE), train a wavelet model, evaluate, sample.
#
#   examples/text.sh [SRC] [OUT]
#
# SRC: text files or a folder of them (default: the bundled Milton corpus). OUT: where the data,
# the run and the samples go (default: examples-out/text). WGPT_EXAMPLE_STEPS sets the training
# steps (default 300: a few minutes on a laptop CPU).
set -euo pipefail
SRC=${1:-}
OUT=${2:-examples-out/text}
STEPS=${WGPT_EXAMPLE_STEPS:-300}
# WGPT_EXAMPLE_TINY=1: a minimal model and batches, to check that the example runs (the tests do).
MODEL=() TRAIN=()
if [[ -n ${WGPT_EXAMPLE_TINY:-} ]]; then
    MODEL=(--layers 1 --heads 2 --width 32 --ffn 64 --context 64)
    TRAIN=(--batch-size 4 --eval-batches 1 --warmup 2 --lr 1e-2)
fi

wgpt prepare text ${SRC:+"$SRC"} --tokenizer bpe --vocab-size 512 --out "$OUT/data" --quiet
wgpt train --data "$OUT/data" --wavelet --steps "$STEPS" "${MODEL[@]}" "${TRAIN[@]}" --out "$OUT/run" --overwrite --quiet
wgpt eval --ckpt "$OUT/run/best.pt" --json > "$OUT/eval.json"
wgpt sample --ckpt "$OUT/run/best.pt" --prompt "Of Man" --tokens 200 --temperature 0.8 \
    --num-samples 2 --out "$OUT/sample.txt" --quiet
echo "samples: $OUT/sample-1.txt $OUT/sample-2.txt; metrics: $OUT/eval.json"

#!/usr/bin/env bash
# Fine-tuning: pre-train on one corpus, then continue from its weights on another with --init-from.
# The second corpus is tokenized with the first one's tokenizer (--tokenizer-from), so the ids
# mean the same.
#
#   examples/fine_tune.sh [SRC] [OUT]
#
# SRC: the corpus to fine-tune on (default: the Markdown documentation of this repository);
# the pre-training corpus is the bundled Milton. OUT: default examples-out/fine_tune.
# WGPT_EXAMPLE_STEPS sets the steps of each run (default 300).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=${1:-$HERE/../docs}
OUT=${2:-examples-out/fine_tune}
STEPS=${WGPT_EXAMPLE_STEPS:-300}
# WGPT_EXAMPLE_TINY=1: a minimal model and batches, to check that the example runs (the tests do).
MODEL=() TRAIN=()
if [[ -n ${WGPT_EXAMPLE_TINY:-} ]]; then
    MODEL=(--layers 1 --heads 2 --width 32 --ffn 64 --context 64)
    TRAIN=(--batch-size 4 --eval-batches 1 --warmup 2 --lr 1e-2)
fi

wgpt prepare text --tokenizer chars --out "$OUT/base-data" --quiet
wgpt train --data "$OUT/base-data" --wavelet --steps "$STEPS" "${MODEL[@]}" "${TRAIN[@]}" --out "$OUT/base" --overwrite --quiet
# chars: a character the base corpus never had becomes id 0 (shown as U+FFFD).
wgpt prepare text "$SRC" --tokenizer-from "$OUT/base-data" --out "$OUT/tune-data" --quiet
wgpt train --data "$OUT/tune-data" --init-from "$OUT/base/best.pt" --steps "$STEPS" "${TRAIN[@]}" --lr 5e-4 --warmup 0 \
    --out "$OUT/tuned" --overwrite --quiet
wgpt sample --ckpt "$OUT/tuned/best.pt" --prompt "wgpt " --tokens 200 --out "$OUT/sample.txt" --quiet
echo "base: $OUT/base; fine-tuned: $OUT/tuned; sample: $OUT/sample.txt"

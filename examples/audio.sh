#!/usr/bin/env bash
# An audio folder to the continuation of a recording: prepare (16 kHz, 8-bit mu-law), train,
# then continue the first recording of the folder.
#
#   examples/audio.sh [AUDIO_DIR] [OUT]
#
# AUDIO_DIR: recordings (WAV, FLAC, OGG, ...; default: the test fixture, 1.6 s of speech).
# OUT: default examples-out/audio. WGPT_EXAMPLE_STEPS sets the training steps (default 300);
# WGPT_EXAMPLE_SECONDS the seconds generated (default 2: about a minute on a CPU).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=${1:-$HERE/../tests/assets/audio}
OUT=${2:-examples-out/audio}
STEPS=${WGPT_EXAMPLE_STEPS:-300}
# WGPT_EXAMPLE_TINY=1: a minimal model and batches, to check that the example runs (the tests do).
MODEL=() TRAIN=()
if [[ -n ${WGPT_EXAMPLE_TINY:-} ]]; then
    MODEL=(--layers 1 --heads 2 --width 32 --ffn 64 --context 64)
    TRAIN=(--batch-size 4 --eval-batches 1 --warmup 2 --lr 1e-2)
fi
LENGTH=${WGPT_EXAMPLE_SECONDS:-2}

wgpt prepare audio "$SRC" --out "$OUT/data" --quiet
wgpt train --data "$OUT/data" --wavelet --steps "$STEPS" "${MODEL[@]}" "${TRAIN[@]}" --out "$OUT/run" --overwrite --quiet
FIRST=$(find "$SRC" -type f \( -iname '*.wav' -o -iname '*.flac' -o -iname '*.ogg' \) | sort | head -n 1)
# The output is the whole recording, then its continuation; --trim-prompt lets a recording longer
# than the model's context be the prompt (the model sees its last context's worth of samples).
wgpt sample --ckpt "$OUT/run/best.pt" --prompt-file "$FIRST" --trim-prompt --seconds "$LENGTH" \
    --out "$OUT/continuation.wav" --quiet
echo "continuation of $FIRST: $OUT/continuation.wav"

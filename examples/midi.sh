#!/usr/bin/env bash
# A MIDI folder to new music: prepare (REMI tokens), train, then write a .mid and a rendered .wav.
#
#   examples/midi.sh [MIDI_DIR] [OUT]
#
# MIDI_DIR: a folder of .mid/.midi files, searched recursively (default: the test fixtures, five
# small tunes). OUT: default examples-out/midi. WGPT_EXAMPLE_STEPS sets the training steps
# (default 300). The .wav is rendered with sine waves; pass --soundfont FILE.sf2 to
# `wgpt sample` for real instruments (needs pip install "wgpt[fluidsynth]").
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=${1:-$HERE/../tests/assets/midi/good}
OUT=${2:-examples-out/midi}
STEPS=${WGPT_EXAMPLE_STEPS:-300}
# WGPT_EXAMPLE_TINY=1: a minimal model and batches, to check that the example runs (the tests do).
MODEL=() TRAIN=()
if [[ -n ${WGPT_EXAMPLE_TINY:-} ]]; then
    MODEL=(--layers 1 --heads 2 --width 32 --ffn 64 --context 64)
    TRAIN=(--batch-size 4 --eval-batches 1 --warmup 2 --lr 1e-2)
fi

wgpt prepare midi "$SRC" --out "$OUT/data" --quiet
wgpt train --data "$OUT/data" --wavelet --steps "$STEPS" "${MODEL[@]}" "${TRAIN[@]}" --out "$OUT/run" --overwrite --quiet
wgpt sample --ckpt "$OUT/run/best.pt" --tokens 300 --seed 1 --out "$OUT/song.wav" --quiet   # writes song.mid, then renders it
echo "music: $OUT/song.mid, $OUT/song.wav"

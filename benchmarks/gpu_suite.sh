#!/usr/bin/env bash
# Every GPU figure in docs/performance.md in one go, for a machine with one CUDA GPU; run from the
# repository root:
#   bash benchmarks/gpu_suite.sh TEXT_FILE OUT_DIR [STEPS]
# 1. benchmarks/gpu_check.py: the wavelet's Triton kernels against its torch path (differences and
#    time of one pass), CPU/GPU parity of training steps, tokens/s and MFU per variant; with the
#    kernels (the default on CUDA), with the torch path for comparison, and compiled.
# 2. wgpt bench on TEXT_FILE as bytes, paper preset: the speed-up as docs/wavelet.md defines it.
# 3. benchmarks/generation.py on the GPU: cached vs uncached decoding, and HF GPT-2.
# 4. CUDA graphs: training steps eager vs replayed (gpu_check.py part 3, paper preset), and
#    decoding with the one-token step replayed (generation.py --cuda-graph, tiny preset, batch 1).
# 5. The GPU-marked tests (kernels, replayed steps, gpu_check on CUDA).
# Each part has its own time limit and writes to OUT_DIR as it goes, so a slow part costs only itself.
set -uo pipefail
text=$1 out=$2 steps=${3:-1500}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the scripts import wgpt from this checkout
py=${PYTHON:-python3}
$py -c 'import importlib.util as u, torch; t = u.find_spec("triton") and __import__("triton").__version__; print("torch", torch.__version__, "triton", t, torch.cuda.get_device_name())' | tee "$out/device.txt"

timeout 200 $py benchmarks/gpu_check.py --rounds 6 --json-out "$out/gpu_check.json" 2>&1 | tee "$out/gpu_check.log"
timeout 200 $py benchmarks/gpu_check.py --rounds 6 --kernel torch --json-out "$out/gpu_check_torch.json" 2>&1 | tee "$out/gpu_check_torch.log"
timeout 600 $py benchmarks/gpu_check.py --rounds 6 --compile --json-out "$out/gpu_check_compile.json" 2>&1 | tee "$out/gpu_check_compile.log"

work=$(mktemp -d)
$py -m wgpt prepare text "$text" --out "$work/data" -q
timeout 240 $py -m wgpt bench --data "$work/data" --preset paper --steps "$steps" --eval-interval 50 \
    --variants baseline,haar,learnable --device cuda --out "$work/bench" -q 2>&1 | tee "$out/bench.log"
cp "$work"/bench/summary.json "$work"/bench/summary.md "$work"/bench/val_loss.png "$out"/ 2>/dev/null

timeout 120 $py benchmarks/generation.py --device cuda --presets tiny,paper --tokens 256,1024 2>&1 | tee "$out/generation.log"

timeout 300 $py benchmarks/gpu_check.py --presets none --cuda-graphs --rounds 6 --json-out "$out/gpu_check_graphs.json" 2>&1 | tee "$out/gpu_check_graphs.log"
timeout 120 $py benchmarks/generation.py --device cuda --cuda-graph --no-hf --presets tiny --tokens 1024,4096 --rounds 3 2>&1 | tee "$out/generation_graphs.log"
timeout 300 $py -m pytest -q -m gpu tests 2>&1 | tail -15 | tee "$out/gpu_tests.log"

#!/usr/bin/env bash
# Make-An-Audio on a lent GPU: every measurement of the GPU speed work in one run, each stage under its own
# time limit so that a failing or slow stage leaves the others their time. Writes at most 8 files to OUT.
#
# Prepare (project root, here):  uv run python ../shared/tools/device_bundle.py && cp -r ../shared/make_an_audio .device/
# Run (device machine, carry .device):  source .device/env.sh && bash benchmarks/make_an_audio_gpu.sh "$OUT"
#
# Stages (each under its own limit, about 460 s in all): full-size stand-in weights are derived; the CUDA tests run
# on the GPU (graph replay = eager loop and stages, Triton snake = PyTorch path); the speed benchmark times both
# presets at batch 1 and 8 in fp32 and bf16 next to the official code; the vocoder is timed against the official
# one at batch 8; last, a second process times bf16 with the UNet under torch.compile at batch 1 and 8. RESTART=1 adds a
# third that starts that worker again, to see what torch's compile caches save of its warm-up.
set -u
OUT=${1:?usage: make_an_audio_gpu.sh OUT_DIR}
LOG=$OUT/log.txt
WEIGHTS=/tmp/maa_derived
OFFICIAL=.device/make_an_audio/official
mkdir -p "$OUT/compiled"

stage() {  # stage NAME SECONDS COMMAND...: run with a time limit, log its output and how it ended
  local name=$1 limit=$2 started=$SECONDS rc
  shift 2
  echo "== $name: start $(date +%T), limit ${limit}s" | tee -a "$LOG"
  timeout "$limit" "$@" >>"$LOG" 2>&1
  rc=$?
  echo "== $name: rc $rc after $((SECONDS - started)) s" | tee -a "$LOG"
  return $rc
}

{ nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  } >>"$LOG" 2>&1

stage weights 40 python3 .device/make_an_audio/golden/derive_weights.py "$WEIGHTS"
stage cuda_tests 90 python3 -m pytest -q -p no:cacheprovider -rs -k "cuda or graph or gpu" \
  --deselect "tests/make_an_audio/test_vocoder.py::test_gpu_kernel_is_used_and_matches_the_pytorch_path_on_this_gpu[bigvgan-nvcc]" \
  tests/make_an_audio/test_presets.py tests/make_an_audio/test_snake_triton.py tests/make_an_audio/test_vocoder.py
grep -E "passed|failed|Error" "$LOG" | tail -3
stage speed 180 python3 benchmarks/make_an_audio_speed.py --weights "$WEIGHTS" --device cuda --dtypes fp32 bf16 \
  --repeat 2 --official "$OFFICIAL" --out "$OUT"
stage vocoder 30 python3 benchmarks/make_an_audio_vocoder.py --weights "$WEIGHTS" --official "$OFFICIAL" \
  --device cuda --frames 625 --batch 8 --rounds 3 --out "$OUT"
stage compiled 120 python3 benchmarks/make_an_audio_speed.py --weights "$WEIGHTS" --device cuda --dtypes bf16 --compile \
  --sampling dpmpp:25 ddim:100 --batch 1 8 --repeat 2 --out "$OUT/compiled"
if [ "${RESTART:-0}" = 1 ]; then  # the same worker started again (its table to the log)
  stage compiled_restart 100 python3 benchmarks/make_an_audio_speed.py --weights "$WEIGHTS" --device cuda --dtypes bf16 \
    --compile --sampling dpmpp:25 ddim:100 --batch 1 --repeat 1 --out /tmp/compiled_restart \
    && grep -h "Worker start" /tmp/compiled_restart/*.md | sed 's/^/restart with warm caches: /' >>"$LOG"
fi
grep -h "^|\|Median\|Worker start" "$OUT"/*.md "$OUT"/compiled/*.md 2>/dev/null | cut -c1-300
grep -h "restart with warm caches\|BigVGAN\|runs eagerly" "$LOG" | cut -c1-300

#!/usr/bin/env bash
# Make-An-Audio on a lent GPU: every measurement of the GPU speed work in one run, each stage under its own
# time limit so that a failing or slow stage leaves the others their time. The default stages write 7 files to OUT
# (a device call brings back 8): run the others in short STAGES lists.
#
# Prepare (project root, here):  uv run python ../shared/tools/device_bundle.py && cp -r ../shared/make_an_audio .device/
# Run (device machine, carry .device):  source .device/env.sh && bash benchmarks/make_an_audio_gpu.sh "$OUT"
#
# Stages, each under its own limit (STAGES picks them; default: all but the last two, about 420 s in all):
#   cuda_tests  the CUDA tests (graph replay = eager loop and stages, Triton snake = PyTorch path)
#   speed       both presets at batch 1 and 8 in fp32 and bf16, next to the official code
#   vocoder     BigVGAN against the official one at batch 8 (agreement with TF32 on and off)
#   compiled    bf16 with the UNet under torch.compile at batch 1 and 8 (a second process)
#   restart     a compiled worker started twice: what torch's compile caches save of its warm-up
#   layouts     the compiled UNet call in NCHW and channels-last, at batch 8, in one process (the probe)
#   scopes      the compile scopes (whole UNet, blocks): warm-up cold and after a restart, call time, agreement
# COMPILE_SCOPE (unet or blocks, default unet) is the scope of the compiled and restart stages.
# Full-size stand-in weights are derived first unless they are there.
#   e.g. STAGES="cuda_tests scopes" bash benchmarks/make_an_audio_gpu.sh "$OUT"       (about 7 minutes)
set -u
OUT=${1:?usage: make_an_audio_gpu.sh OUT_DIR}
LOG=$OUT/log.txt
WEIGHTS=/tmp/maa_derived
OFFICIAL=.device/make_an_audio/official
STAGES=" ${STAGES:-cuda_tests speed vocoder compiled} "
SCOPE=${COMPILE_SCOPE:-unet}
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
want() { [[ $STAGES == *" $1 "* ]]; }

{ nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  } >>"$LOG" 2>&1

[ -f "$WEIGHTS/maa1_full.ckpt" ] || stage weights 40 python3 .device/make_an_audio/golden/derive_weights.py "$WEIGHTS"
want cuda_tests && stage cuda_tests 90 python3 -m pytest -q -p no:cacheprovider -rs -k "cuda or graph or gpu" \
  --deselect "tests/make_an_audio/test_vocoder.py::test_gpu_kernel_is_used_and_matches_the_pytorch_path_on_this_gpu[bigvgan-nvcc]" \
  tests/make_an_audio/test_presets.py tests/make_an_audio/test_snake_triton.py tests/make_an_audio/test_vocoder.py
grep -E "passed|failed|Error" "$LOG" | tail -3
want speed && stage speed 180 python3 benchmarks/make_an_audio_speed.py --weights "$WEIGHTS" --device cuda --dtypes fp32 bf16 \
  --repeat 2 --official "$OFFICIAL" --out "$OUT"
want vocoder && stage vocoder 40 python3 benchmarks/make_an_audio_vocoder.py --weights "$WEIGHTS" --official "$OFFICIAL" \
  --device cuda --frames 625 --batch 8 --rounds 3 --out "$OUT"
want compiled && stage compiled 120 python3 benchmarks/make_an_audio_speed.py --weights "$WEIGHTS" --device cuda --dtypes bf16 --compile \
  --compile-scope "$SCOPE" --sampling dpmpp:25 ddim:100 --batch 1 8 --repeat 2 --out "$OUT/compiled"
if want restart; then  # a compiled worker (batch 1) started twice: the second start finds torch's compile caches
  for start in first again; do
    stage "compiled_start_$start" 100 python3 benchmarks/make_an_audio_speed.py --weights "$WEIGHTS" --device cuda \
      --dtypes bf16 --compile --compile-scope "$SCOPE" --sampling dpmpp:25 ddim:100 --batch 1 --repeat 1 --out "/tmp/compiled_$start" \
      && grep -h "Worker start" "/tmp/compiled_$start"/*.md | sed "s/^/compiled worker, $start start: /" >>"$LOG"
  done
fi
want layouts && stage layouts 180 python3 benchmarks/make_an_audio_gpu_probe.py --weights "$WEIGHTS" --out "$OUT" \
  --compile nchw channels_last --batches 8 --compile-only
want scopes && stage scopes 360 python3 benchmarks/make_an_audio_compile.py --weights "$WEIGHTS" --device cuda \
  --dtype bf16 --out "$OUT"
grep -h "^|\|Median\|Agreement\|Worker start\|^compiled" "$OUT"/*.md "$OUT"/compiled/*.md 2>/dev/null | cut -c1-300
grep -h "compiled worker, \|BigVGAN\|runs eagerly" "$LOG" | cut -c1-300

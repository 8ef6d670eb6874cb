#!/usr/bin/env bash
# The GPU suite: every generator family's speed on a lent GPU in ONE device call (issue 27), or the same stages on
# the CPU with the tests' tiny models (--smoke, what CI runs, so the script is tested before any GPU sees it).
#
#   bash benchmarks/gpu_suite.sh OUT            # GPU: full-size random weights, bf16, 10 s clips
#   bash benchmarks/gpu_suite.sh --smoke OUT    # CPU: tiny models, 1 s clips, a few steps (CI: tests/bench)
#   bash benchmarks/gpu_suite.sh --list         # the stage names, in the order they run
#   STAGES="maa_speed maa_scopes" bash benchmarks/gpu_suite.sh OUT     # only these (e.g. a second call)
#
# On the device: bundle first (benchmarks/gpu_bundle.sh), then see benchmarks/results/README.md for the one call.
# Each stage runs under its own time limit, cut to what is left of the suite's budget (GPU_SUITE_BUDGET seconds,
# default 420: a 9-minute call less the machine's start; --smoke: 900 and 4x the limits), so a slow stage cannot
# eat the others'; one that times out, fails or finds no time left gets a row saying so. Every row lands in OUT as
# it is measured (rows.jsonl, gpu_suite.csv, gpu_suite.md: tag_bench/gpu_suite.py), next to log.txt, cuda_tests.txt
# and pages.tgz (the scripts' own pages): 6 files, the device tool brings back 8. Afterwards, here:
#   uv run python -m tag_bench.gpu_suite merge OUT      # appends to benchmarks/results/gpu_suite.{csv,md}
# Random full-size weights in the official layouts are written on the machine by a background job that runs
# while the first stages measure (speed does not depend on the values); each stage waits for its own.
#
# Adding a stage (e.g. ace_step): give its speed script `--suite DIR` (rows from tag_bench.gpu_suite.make_row,
# passed to gpu_suite.record as they are measured), add its weights to prepare(), one `stage` line in run_stages
# and its name to STAGE_NAMES; the smoke test then checks it too.
set -u
SMOKE=0
case "${1:-}" in
  --smoke) SMOKE=1; shift ;;
  --list) LIST=1 ;;
esac
STAGE_NAMES="cuda_tests audiogen_medium audiogen_tokens sa3_small sao sa3_medium ace_step musicgen_small \
musicgen_medium maa_speed maa_scopes"
if [ "${LIST:-0}" = 1 ]; then echo $STAGE_NAMES; exit 0; fi
OUT=${1:?usage: gpu_suite.sh [--smoke] OUT_DIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
WORK=${GPU_SUITE_WORK:-$(mktemp -d /tmp/gpu-suite.XXXXXX)}  # weights and the scripts' pages, not under OUT
mkdir -p "$WORK/ready" "$WORK/pages"
LOG=$OUT/log.txt
PY=${PYTHON:-python3}
export PYTHONPATH="$ROOT/benchmarks:$ROOT/tests${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export GPU_SUITE_COMMIT=${GPU_SUITE_COMMIT:-$(cat .device/commit.txt 2>/dev/null \
  || git describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)}
STAGES=" ${STAGES:-$STAGE_NAMES} "
DEADLINE=$((SECONDS + ${GPU_SUITE_BUDGET:-$([ $SMOKE = 1 ] && echo 900 || echo 420)}))

if [ $SMOKE = 1 ]; then  # the same stages at the tests' sizes on the CPU: checks the wiring, not the speed
  DEV=cpu DTYPE=fp32 AG=tiny MG_SMALL=musicgen-tiny MG_MEDIUM=musicgen-tiny SA=tiny DUR=1 LONG=2 AG_B=1,2 SA_B="1 2"
  LIMIT_SCALE=4  # stage limits fit a GPU's budget; a loaded 2-core CI runner needs longer just to import
  REPEATS=1 TOKENS=0.5 SA_STEPS="--steps 2" MAA_SIZE="--tiny make_an_audio" MAA_SAMPLING=ddim:2 MAA_B="1 2"
  SHAPES="1:1" PREP_THREADS=1 ACE_SIZE=tiny ACE_DUR=10 ACE_B="1 2" ACE_STEPS="--steps 2"
  # Inductor compiles C++ for minutes on a CPU: the smoke runs the scope stage's processes and rows with
  # torch.compile disabled (it checks the wiring; tests/make_an_audio check compiling on the CPU).
  SCOPES_ENV="TORCH_COMPILE_DISABLE=1"
  export OMP_NUM_THREADS=1
else
  DEV=cuda DTYPE=bf16 AG=medium MG_SMALL=musicgen-small MG_MEDIUM=musicgen-medium SA=full DUR=10 LONG=120
  LIMIT_SCALE=1 AG_B=1,16 SA_B="1 8" REPEATS=2 TOKENS=2 SA_STEPS="" MAA_SIZE="" MAA_SAMPLING=ddim:100 MAA_B="1 8"
  SHAPES="10:1 10:8" PREP_THREADS=${GPU_SUITE_PREP_THREADS:-8} SCOPES_ENV="GPU_SUITE=1"
  ACE_SIZE=full ACE_DUR="60 240" ACE_B="1 4" ACE_STEPS=""  # songs: the 10 s minimum; turbo's 8 steps
fi

want() { [[ $STAGES == *" $1 "* ]]; }
say() { echo "$*" | tee -a "$LOG"; }

prepare() {  # background: every stage's random weights, in stage order; WORK/ready/NAME.ok (or .failed) when done
  local name
  while [ $# -gt 0 ]; do
    name=$1; shift
    local -a cmd=()
    while [ $# -gt 0 ] && [ "$1" != ";" ]; do cmd+=("$1"); shift; done
    shift
    echo "== weights $name: start $(date +%T)" >>"$WORK/prepare.log"
    if OMP_NUM_THREADS=$PREP_THREADS nice -n 10 "${cmd[@]}" >>"$WORK/prepare.log" 2>&1; then
      touch "$WORK/ready/$name.ok"
    else
      touch "$WORK/ready/$name.failed"
    fi
    echo "== weights $name: end $(date +%T)" >>"$WORK/prepare.log"
  done
}

stage() {  # stage NAME BACKEND LIMIT WEIGHTS COMMAND...: waits for WEIGHTS (- for none), runs under the limit
  local name=$1 backend=$2 limit=$3 weights=$4 started=$SECONDS rc left
  shift 4
  want "$name" || return 0
  left=$((DEADLINE - SECONDS))
  if [ "$left" -lt 10 ]; then
    say "== $name: not run, ${left}s of the budget left"
    $PY -m tag_bench.gpu_suite failed "$OUT" --stage "$name" --backend "$backend" --rc -1 >>"$LOG" 2>&1
    return 0
  fi
  limit=$((limit * LIMIT_SCALE))
  [ "$limit" -gt "$left" ] && limit=$left
  say "== $name: start $(date +%T), limit ${limit}s"
  GPU_SUITE_STAGE=$name timeout -k 5 "$limit" bash -c \
    'until [ "$0" = - ] || [ -e "$0.ok" ]; do [ -e "$0.failed" ] && { echo "its weights were not written"; exit 3; }
     sleep 1; done; exec "$@"' "$([ "$weights" = - ] && echo - || echo "$WORK/ready/$weights")" "$@" >>"$LOG" 2>&1
  rc=$?
  say "== $name: rc $rc after $((SECONDS - started)) s"
  if [ $rc -ne 0 ]; then
    $PY -m tag_bench.gpu_suite failed "$OUT" --stage "$name" --backend "$backend" --rc $rc \
      --seconds $((SECONDS - started)) >>"$LOG" 2>&1
  fi
  tar -czf "$OUT/pages.tgz" -C "$WORK" pages prepare.log 2>/dev/null
  return 0
}

cuda_tests() {  # the tests skipped without CUDA (marked `cuda` by tests/conftest.py); the nvcc build is left out
  local summary rc
  $PY -m pytest -q -p no:cacheprovider -rs -m cuda tests/make_an_audio tests/audiogen tests/stable_audio \
    --deselect "tests/make_an_audio/test_vocoder.py::test_gpu_kernel_is_used_and_matches_the_pytorch_path_on_this_gpu[bigvgan-nvcc]" \
    >"$OUT/cuda_tests.txt" 2>&1
  rc=$?
  summary=$(grep -E "passed|failed|skipped|error|no tests ran" "$OUT/cuda_tests.txt" | tail -1)
  $PY -m tag_bench.gpu_suite note "$OUT" --stage cuda_tests --backend tests --variant "pytest -m cuda" \
    --notes "exit $rc: ${summary:-no summary, see cuda_tests.txt}"
  [ $rc -eq 0 ] || [ $rc -eq 5 ]  # 5: none collected
}

run_stages() {
  local ag="$PY benchmarks/audiogen_speed.py --device $DEV --weights-root $WORK --out $WORK/pages --suite $OUT"
  local sa="$PY benchmarks/stable_audio_speed.py --device $DEV --size $SA $SA_STEPS --weights-root $WORK/sa \
    --out $WORK/pages --suite $OUT"
  local maa="--weights $WORK/make_an_audio --device $DEV --out $WORK/pages --suite $OUT"
  export -f cuda_tests; export OUT PY
  stage cuda_tests tests 60 - bash -c cuda_tests
  stage audiogen_medium audiogen 120 ag $ag --shape $AG --dtype $DTYPE --duration $DUR --batches $AG_B \
    --repeats $REPEATS --reference-batches none
  stage audiogen_tokens audiogen 75 ag $ag --shape $AG --dtype fp32 --duration $DUR --batches "" \
    --reference-batches none --token-check $TOKENS
  stage sa3_small stable_audio_3 75 sa3-small $sa --models sa3-small --durations $DUR $LONG --batch $SA_B
  stage sao stable_audio_open 60 sao $sa --models sao --durations $DUR --batch $SA_B
  stage sa3_medium stable_audio_3 60 sa3-medium $sa --models sa3-medium --durations $DUR --batch $SA_B
  stage ace_step ace_step 90 ace-step $PY benchmarks/ace_step_speed.py --size $ACE_SIZE --device $DEV --dtype $DTYPE \
    --weights-root $WORK/ace --durations $ACE_DUR --batch $ACE_B $ACE_STEPS --out $WORK/pages --suite $OUT
  stage musicgen_small musicgen 60 mg-small $ag --shape $MG_SMALL --dtype $DTYPE --duration $DUR --batches $AG_B \
    --repeats $REPEATS --reference-batches none --token-check $TOKENS
  stage musicgen_medium musicgen 75 mg-medium $ag --shape $MG_MEDIUM --dtype $DTYPE --duration $DUR \
    --batches $AG_B --repeats $REPEATS --reference-batches none
  stage maa_speed make_an_audio 60 maa $PY benchmarks/make_an_audio_speed.py $maa --dtypes $DTYPE \
    --duration $DUR --sampling $MAA_SAMPLING --batch $MAA_B --repeat $REPEATS
  stage maa_scopes make_an_audio 150 maa env $SCOPES_ENV $PY benchmarks/make_an_audio_compile.py $maa --dtype $DTYPE \
    --shapes $SHAPES
}

: >"$LOG"
say "== gpu_suite $([ $SMOKE = 1 ] && echo smoke || echo gpu), commit $GPU_SUITE_COMMIT, work $WORK, $(date -u +%FT%TZ)"
{ nvidia-smi -L 2>/dev/null; $PY -c "import torch, platform; print('torch', torch.__version__, 'cuda',
torch.cuda.is_available() and torch.cuda.get_device_name(), platform.python_version())"
  $PY -c "import importlib.metadata as m; print(*(f'{n} {m.version(n)}' for n in ('diffusers', 'transformers',
'audiocraft', 'huggingface_hub')))"; } >>"$LOG" 2>&1
prepare \
  ag $PY benchmarks/audiogen_speed.py --shape $AG --weights-root "$WORK" --write-only \; \
  sa3-small $PY benchmarks/stable_audio_speed.py --size $SA --models sa3-small --weights-root "$WORK/sa" --write-only \; \
  sao $PY benchmarks/stable_audio_speed.py --size $SA --models sao --weights-root "$WORK/sa" --write-only \; \
  sa3-medium $PY benchmarks/stable_audio_speed.py --size $SA --models sa3-medium --weights-root "$WORK/sa" --write-only \; \
  ace-step $PY benchmarks/ace_step_speed.py --size $ACE_SIZE --weights-root "$WORK/ace" --write-only \; \
  mg-small $PY benchmarks/audiogen_speed.py --shape $MG_SMALL --weights-root "$WORK" --write-only \; \
  maa $PY benchmarks/random_weights.py "$WORK" --backends make_an_audio $MAA_SIZE \; \
  mg-medium $PY benchmarks/audiogen_speed.py --shape $MG_MEDIUM --weights-root "$WORK" --write-only \; &
PREPARE=$!
run_stages
pkill -P "$PREPARE" 2>/dev/null; kill "$PREPARE" 2>/dev/null  # weights still being written for stages not run
tar -czf "$OUT/pages.tgz" -C "$WORK" pages prepare.log 2>/dev/null
say "== gpu_suite done after $SECONDS s; $(wc -l <"$OUT/rows.jsonl" 2>/dev/null || echo 0) rows in $OUT"
cat "$OUT/gpu_suite.md" 2>/dev/null | cut -c1-400

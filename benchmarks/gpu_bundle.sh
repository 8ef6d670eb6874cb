#!/usr/bin/env bash
# Prepare the GPU suite's one device call (here, from the project root): ../shared/tools/device_bundle.py packs
# what the GPU image lacks into .device/ (diffusers, audiocraft and its imports, bigvgan, soundfile, librosa...: its
# DEFAULT list covers every stage of benchmarks/gpu_suite.sh), then the commit measured goes into
# .device/commit.txt, since the device's copy of the tree has no .git. Then, with the device tool:
#   run(carry=[".device"], timeout_s=540,
#       command="source .device/env.sh && bash benchmarks/gpu_suite.sh $OUT")
# and here afterwards: uv run python -m tag_bench.gpu_suite merge <files_at folder>
set -euo pipefail
cd "$(dirname "$0")/.."
uv run python ../shared/tools/device_bundle.py "$@"
git describe --always --dirty --abbrev=12 >.device/commit.txt
echo "commit $(cat .device/commit.txt); .device: $(du -sm .device | cut -f1) MiB (with the tree: 64 MiB at most)"

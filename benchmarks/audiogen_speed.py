"""AudioGen speed benchmark: seconds per 10 s clip, throughput at several batch sizes, peak memory.

Runs the `audiogen` backend (the same loader and sampler users get) on a random-weight model written in
audiocraft's exported format: the full AudioGen-medium architecture on a GPU (`--shape medium`, the default when
CUDA is present), or a tiny one on the CPU for a sanity run (`--shape tiny`). Random weights give the real cost per
token because every step runs the whole network. The T5-large text encoder is replaced by a lookup table (it runs
once per request, a negligible share of the time).

    uv run python benchmarks/audiogen_speed.py --shape tiny --duration 2 --batches 1,4 --device cpu

Writes audiogen_speed_<shape>_<device>.md and .csv to `--out` (default benchmarks/results/).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from tag_bench.script_output import device_name, peak_memory_gib, peak_memory_note, write_results

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).parent / "results"
FIELDS = ["batch", "duration_s", "wall_s", "s_per_10s_clip", "clips_per_min", "audio_s_per_wall_s", "peak_mem_gib"]


def main() -> None:
    import torch

    from tag_audiogen.backend import AudioGenBackend
    from tag_audiogen.synthetic import AUDIOGEN_MEDIUM, ModelShape, export_random_model
    from tagcore import GenerationItem

    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("tiny", "medium"), default="medium" if cuda else "tiny")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if cuda else "cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--batches", default="1,4,16")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS, help="output folder")
    args = parser.parse_args()

    shape = AUDIOGEN_MEDIUM if args.shape == "medium" else ModelShape()
    with tempfile.TemporaryDirectory() as tmp:
        folder = export_random_model(Path(tmp) / f"audiogen-{args.shape}-random", shape)
        backend = AudioGenBackend({"weights": str(folder), "device": args.device, "dtype": args.dtype})
        started = time.perf_counter()
        backend.ensure_loaded()
        load_s = time.perf_counter() - started
    options = backend.resolve_request_options({})
    params = sum(p.numel() for p in backend.model.lm.parameters()) / 1e6
    backend.generate("warm up", 1.0, seed=0)
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        items = [GenerationItem(f"benchmark sound {i % 4}", seed=i) for i in range(batch)]
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            backend.generate_batch(items, args.duration, options=options)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
        best = min(times)
        rows.append({"batch": batch, "duration_s": args.duration, "wall_s": round(best, 3),
                     "s_per_10s_clip": round(best / batch * 10.0 / args.duration, 3),
                     "clips_per_min": round(60.0 * batch / best, 2),
                     "audio_s_per_wall_s": round(batch * args.duration / best, 3),
                     "peak_mem_gib": round(peak_memory_gib(args.device), 2)})
        print(rows[-1], flush=True)

    intro = [f"# AudioGen speed ({args.shape} architecture, random weights)", "",
             f"- device: {device_name(args.device)}",
             f"- dtype: {args.dtype}; LM parameters: {params:.1f} M; load: {load_s:.1f} s",
             f"- options: audiocraft defaults (top_k 250, cfg_coef 3.0); clip length {args.duration:g} s; "
             f"best of {args.repeats}", f"- {peak_memory_note(args.device)}",
             f"- date: {time.strftime('%Y-%m-%d %H:%M')}"]
    paths = write_results(args.out / f"audiogen_speed_{args.shape}_{args.device}", FIELDS, rows, intro)
    print(paths[-1].read_text())


if __name__ == "__main__":
    main()

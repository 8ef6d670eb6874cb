"""AudioGen speed benchmark: our decode loop (`decoder=tag`) and audiocraft's own, side by side in one run.

Runs the `audiogen` backend (the same loader and sampler users get) twice on one random-weight model written in
audiocraft's exported format: once with `decoder=tag`, once with `decoder=audiocraft`, alternating the two on every
repeat so machine load hits both alike. Shapes: the full AudioGen-medium architecture (`--shape medium`, the
default when CUDA is present), a small deep model for the CPU target (`--shape deep`: 8 layers, dim 64,
cross-attention) or the tests' tiny one (`--shape tiny`). Random weights give the real cost per token because every
step runs the whole network. The T5-large text encoder is replaced by a lookup table (it runs once per request).

    uv run python benchmarks/audiogen_speed.py --shape deep --duration 4 --batches 1,4 --repeats 3 --threads 1
    python3 benchmarks/audiogen_speed.py --shape medium --batches 1,4,16 --reference-batches 1   # on a GPU

Rows: seconds per batch for each decoder, and `speedup` = audiocraft's time / ours. The first request of each
batch size on CUDA captures our CUDA graphs: that cost is its own `warm-up` row, not part of the timed rows.
Writes audiogen_speed_<shape>_<device>.md and .csv to `--out` (default benchmarks/results/).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from tag_bench.script_output import device_name, peak_memory_gib, peak_memory_note, write_results

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).parent / "results"
FIELDS = ["decoder", "batch", "duration_s", "wall_s", "s_per_10s_clip", "audio_s_per_wall_s", "speedup",
          "peak_mem_gib"]
DECODERS = ("audiocraft", "tag")


def _shape(name: str):
    from tag_audiogen.synthetic import AUDIOGEN_MEDIUM, ModelShape

    return {"medium": AUDIOGEN_MEDIUM, "tiny": ModelShape(),
            "deep": ModelShape(dim=64, num_heads=4, num_layers=8)}[name]


def _logits_agreement(backend) -> float:
    """Relative L2 between our per-step CFG logits and audiocraft's, teacher-forced on random codes (the
    numerical check behind "same tokens": exact up to rounding in fp32, bf16 noise on a GPU)."""
    import torch
    from audiocraft.modules.conditioners import ConditioningAttributes

    from tag_audiogen.decode_loop import teacher_forced_logits

    lm = backend.model.lm
    codes = torch.randint(0, lm.card, (1, lm.num_codebooks, 100), generator=torch.Generator().manual_seed(0))
    attributes = [ConditioningAttributes(text={"description": "benchmark sound"})]
    ours, reference = teacher_forced_logits(backend.model, attributes, codes.to(backend.device), 3.0)
    return float((ours - reference).norm() / reference.norm())


def main() -> None:
    import torch

    from tag_audiogen.backend import AudioGenBackend
    from tag_audiogen.synthetic import export_random_model
    from tagcore import GenerationItem

    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("tiny", "deep", "medium"), default="medium" if cuda else "deep")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if cuda else "cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--batches", default="1,4,16")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--reference-batches", default="",
                        help="batch sizes audiocraft's loop also runs (default: all); on a GPU it takes ~60 s per "
                             "10 s clip whatever the batch, so e.g. --reference-batches 1 saves device time")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="output folder")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as tmp:
        folder = export_random_model(Path(tmp) / f"audiogen-{args.shape}-random", _shape(args.shape))
        backends = {}
        for decoder in DECODERS:
            backends[decoder] = AudioGenBackend({"weights": str(folder), "device": args.device, "dtype": args.dtype,
                                                 "decoder": decoder})
            backends[decoder].ensure_loaded()
    options = backends["tag"].resolve_request_options({})
    params = sum(p.numel() for p in backends["tag"].model.lm.parameters()) / 1e6
    for backend in backends.values():
        backend.generate("warm up", 1.0, seed=0)
    relative_l2 = _logits_agreement(backends["tag"])
    print(f"teacher-forced logits, ours vs audiocraft: relative L2 {relative_l2:.2e}", flush=True)

    def run(decoder: str, items: list) -> float:
        started = time.perf_counter()
        backends[decoder].generate_batch(items, args.duration, options=options)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - started

    rows = []
    reference_batches = {int(b) for b in (args.reference_batches or args.batches).split(",")}
    for batch in (int(b) for b in args.batches.split(",")):
        decoders = DECODERS if batch in reference_batches else ("tag",)
        items = [GenerationItem(f"benchmark sound {i % 4}", seed=i) for i in range(batch)]
        if cuda:
            warmup = run("tag", items)  # captures this batch size's graphs (once per worker)
            rows.append({"decoder": "tag warm-up (first request: graph capture)", "batch": batch,
                         "duration_s": args.duration, "wall_s": round(warmup, 3), "s_per_10s_clip": "",
                         "audio_s_per_wall_s": "", "speedup": "", "peak_mem_gib": ""})
        times: dict[str, list[float]] = {decoder: [] for decoder in decoders}
        peaks: dict[str, float] = {}
        for _ in range(args.repeats):
            for decoder in decoders:
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                times[decoder].append(run(decoder, items))
                peaks[decoder] = peak_memory_gib(args.device)
        best = {decoder: min(values) for decoder, values in times.items()}
        for decoder in decoders:
            rows.append({"decoder": decoder, "batch": batch, "duration_s": args.duration,
                         "wall_s": round(best[decoder], 3),
                         "s_per_10s_clip": round(best[decoder] / batch * 10.0 / args.duration, 3),
                         "audio_s_per_wall_s": round(batch * args.duration / best[decoder], 3),
                         "speedup": round(best["audiocraft"] / best[decoder], 2) if "audiocraft" in best else "",
                         "peak_mem_gib": round(peaks[decoder], 2)})
            print(rows[-1], flush=True)

    command = " ".join(["uv run python benchmarks/audiogen_speed.py", *sys.argv[1:]])
    intro = [f"# AudioGen speed: our decode loop vs audiocraft's ({args.shape} architecture, random weights)", "",
             f"- device: {device_name(args.device)} ({platform.machine()}, {os.cpu_count()} cores)",
             f"- dtype: {args.dtype}; LM parameters: {params:.2f} M",
             f"- options: audiocraft defaults (top_k 250, cfg_coef 3.0); clip length {args.duration:g} s; "
             f"best of {args.repeats}, the two decoders alternating", f"- {peak_memory_note(args.device)}",
             "- speedup: audiocraft's wall time / this row's (same batch, same run)",
             f"- teacher-forced CFG logits over 100 frames, our step vs audiocraft's forward: relative L2 "
             f"{relative_l2:.2e}",
             f"- machine load average (1 min) at start / end: {load_before:.1f} / {os.getloadavg()[0]:.1f}",
             f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}", f"- command: `{command}`"]
    paths = write_results(args.out / f"audiogen_speed_{args.shape}_{args.device}", FIELDS, rows, intro)
    print(paths[-1].read_text())


if __name__ == "__main__":
    main()

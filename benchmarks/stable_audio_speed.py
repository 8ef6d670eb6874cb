"""Seconds per clip for Stable Audio 3 (small, medium) and Stable Audio Open 1.0, at batch 1 and 8, for 10 s and
60 s clips, through the `stable_audio_3` / `stable_audio_open` backends (the diffusers pipelines).

Weights are random, written once in the hub layout by tests/tag_testkit/stable_audio_tiny.py: `--size full` at the
published sizes (speed does not depend on the values), `--size tiny` for a quick run of the whole path on a CPU.
A clip longer than a checkpoint's limit (Stable Audio Open: 47.5 s) is run at that limit and says so. The
small-sfx and small-music checkpoints share one architecture (`sa3-small`), so one row stands for both.

    uv run python benchmarks/stable_audio_speed.py --size full --device cuda                    # every row
    uv run python benchmarks/stable_audio_speed.py --size full --models sa3-small --batch 1 --durations 10

`--write-only` writes the weights and stops (a GPU run prepares them while another stage runs); `--suite DIR`
adds the rows to a GPU suite run there too (tag_bench.gpu_suite), with the first call's time as warm-up.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
MODELS = {"sa3-small": ("stable_audio_3", "small"), "sa3-medium": ("stable_audio_3", "medium"),
          "sao": ("stable_audio_open", "full")}
FIELDS = ("model", "size", "params_m", "device", "dtype", "duration_s", "steps", "batch", "s_per_clip",
          "x_realtime", "peak_mem_gib")


def write_weights(model: str, size: str, root: Path) -> Path:
    """The model's random-weight folder under `root`, written on first use."""
    from tag_testkit.stable_audio_tiny import write_sa3, write_sao

    folder = root / f"{model}-{size}"
    if not (folder / "model_index.json").is_file():
        started = time.perf_counter()
        if model == "sao":
            write_sao(folder, "tiny" if size == "tiny" else "full")
        else:  # a tiny SA3 accepts 120 s like the small models, so the 60 s rows run
            write_sa3(folder, "tiny" if size == "tiny" else MODELS[model][1],
                      max_seconds=120.0 if size == "tiny" else None)
        print(f"wrote {folder} in {time.perf_counter() - started:.0f} s", flush=True)
    return folder


def measure(model: str, args: argparse.Namespace, loads: list[str]) -> list[dict[str, Any]]:
    """Every duration x batch row of one model (its backend loaded once, after one untimed 1-step call)."""
    import torch

    from tag_bench import gpu_suite
    from tag_bench.script_output import peak_memory_gib
    from tagcore import GenerationItem
    from tagcore.plugins import backends

    name, _ = MODELS[model]
    folder = write_weights(model, args.size, args.weights_root)
    backend = backends().get(name)({"weights": str(folder), "device": args.device, "dtype": args.dtype})
    started = time.perf_counter()
    backend.ensure_loaded()
    loads.append(f"{model} {time.perf_counter() - started:.1f} s")
    pipe, device = backend.model, backend.device
    params = sum(p.numel() for m in pipe.components.values() if isinstance(m, torch.nn.Module)
                 for p in m.parameters()) / 1e6
    steps = {"steps": args.steps} if args.steps else {}
    started = time.perf_counter()
    backend.generate_batch([GenerationItem("warm up", 0)], 2.0, options=backend.resolve_request_options({"steps": 1}))
    warmup = time.perf_counter() - started
    rows = []
    for duration in args.durations:
        seconds = min(duration, backend.max_duration)
        for batch in args.batch:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            items = [GenerationItem(f"a dog barks in the rain {i}", seed=i) for i in range(batch)]
            options = backend.resolve_request_options(steps)
            t0 = time.perf_counter()
            results = backend.generate_batch(items, seconds, options=options)
            total = time.perf_counter() - t0
            row = dict(model=model, size=args.size, params_m=round(params, 1), device=device.type,
                       dtype=results[0].metadata["dtype"], duration_s=round(seconds, 2),
                       steps=results[0].metadata["steps"], batch=batch, s_per_clip=round(total / batch, 3),
                       x_realtime=round(seconds * batch / total, 2), peak_mem_gib=round(peak_memory_gib(device), 2))
            rows.append(row)
            print(row, flush=True)
            clipped = f"; asked {duration:g} s, the checkpoint's limit is {seconds:g} s" if seconds < duration else ""
            gpu_suite.record(args.suite, [gpu_suite.make_row(
                backend=name, variant=f"{model} ({args.size})", device=gpu_suite.torch_device_name(device),
                dtype=row["dtype"], sampler=type(pipe.scheduler).__name__, steps=row["steps"],
                duration_s=row["duration_s"], batch=batch, s_per_clip=total / batch, warmup_s=warmup,
                peak_gib=row["peak_mem_gib"], notes=f"{params:.0f} M params; {row['x_realtime']}x real time; warm-up: "
                f"the first call (2 s clip, 1 step) after a {loads[-1]} load{clipped}")])
    backend.unload()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("tiny", "full"), default="full")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    parser.add_argument("--weights-root", type=Path, default=Path("/tmp/tag-stable-audio-random"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--durations", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--steps", type=int, default=0,
                        help="sampling steps (0: each pipeline's default, 8 for SA3, 100 for SAO)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--label", default="", help="appended to the results' file names (several runs, one size)")
    parser.add_argument("--write-only", action="store_true", help="write the models' weights and stop")
    parser.add_argument("--suite", type=Path, help="also add the rows to the GPU suite run in this folder")
    args = parser.parse_args()
    if args.write_only:
        for model in args.models:
            write_weights(model, args.size, args.weights_root)
        return

    from tag_bench.script_output import device_name, peak_memory_note, write_results
    from tagcore.devices import resolve_device

    rows: list[dict[str, Any]] = []
    loads: list[str] = []
    load_before = os.getloadavg()[0]
    for model in args.models:
        rows += measure(model, args, loads)
    device = resolve_device(args.device)
    stem = args.out / f"stable_audio_speed_{args.size}_{device.type}{'_' + args.label if args.label else ''}"
    intro = [f"# Stable Audio speed ({device_name(device)})", "",
             f"Command: `uv run python benchmarks/stable_audio_speed.py {' '.join(sys.argv[1:])}`, "
             f"{time.strftime('%Y-%m-%d', time.gmtime())}. Random weights in the hub layout "
             f"(tests/tag_testkit/stable_audio_tiny.py, size {args.size}); load times: {', '.join(loads)}. "
             f"s_per_clip = wall-clock time of one `generate_batch` / batch; {peak_memory_note(device)}",
             f"Machine load average (1 min) {load_before:.1f} before and {os.getloadavg()[0]:.1f} after the runs "
             f"(other jobs on the same cores slow every row accordingly: compare rows of one run, as ratios)."]
    for path in write_results(stem, FIELDS, rows, intro):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

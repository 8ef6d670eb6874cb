"""Make-An-Audio speed: cold load, graph warm-up, seconds per clip by sampler, steps, batch and dtype, memory.

Runs the real backend code at full size. Weights: a folder in the official layout (`--weights DIR`: the real
useful_ckpts, or stand-ins derived with ../shared/make_an_audio/golden/derive_weights.py), or `--random DIR`
to write full-size random weights there first (speed does not depend on the values).

    uv run python benchmarks/make_an_audio_speed.py --random /tmp/maa_full          # GPU: both presets, bf16
    uv run python benchmarks/make_an_audio_speed.py --weights DIR --dtypes fp32 bf16 --official REPO
    uv run python benchmarks/make_an_audio_speed.py --weights DIR --device cpu --duration 2 --sampling ddim:5 \
        --batch 1 2 --repeat 1

Each row (dtype x SAMPLER:STEPS x batch) is run once untimed (on CUDA that call captures the row's graphs
unless the worker-start warm-up already did; its capture time is reported) and then `--repeat` times; the
median is reported. On CUDA the backend is started as a worker is, with `warmup` set to the benchmarked
clip length and batch sizes, and the time that start spent capturing graphs is reported.
`--official REPO` (a checkout of the official code, never part of this project) also times the official gen_wav
path in the same process on the same device (DDIM rows, once per steps x batch, right after TAG's rows), and
reports how far TAG's fp32 batch-1 clip is from the official one for the same seed (max abs, relative L2).
When fp32 is among `--dtypes`, each other dtype's batch-1 clip is compared with the fp32 clip (relative L2).

Writes make_an_audio_speed_<device>.md and .csv to `--out` (default benchmarks/results/); `--suite DIR` adds each
row to a GPU suite run there as it is measured (tag_bench.gpu_suite), its warm-up being the worker start's graph
capture (compile included) or, without one, what the row's untimed first call took beyond a timed one.
"""
from __future__ import annotations

import argparse
import datetime
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from tag_bench import gpu_suite
from tag_bench.maa_official import agreement
from tag_bench.script_output import device_name, peak_memory_gib, peak_memory_note, write_results

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
FIELDS = ["device", "dtype", "sampler", "duration_s", "steps", "batch", "s_per_clip", "x_realtime", "text_s",
          "diffusion_s", "vae_s", "vocoder_s", "first_call_capture_s", "peak_mem_gib", "official_s_per_clip",
          "tag_over_official", "max_abs_vs_official", "rel_l2_vs_official", "rel_l2_vs_fp32"]
PROMPT = "a dog barks in the rain"


def write_random(folder: Path) -> None:
    from tag_testkit.make_an_audio_tiny import FULL, TINY_WORDS, write_folder

    if not (folder / "maa1_full.ckpt").is_file():
        write_folder(folder, FULL, TINY_WORDS)


def sampling_arg(text: str) -> tuple[str, int]:
    sampler, _, steps = text.partition(":")
    if sampler not in ("ddim", "dpmpp") or not steps.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not ddim:STEPS or dpmpp:STEPS")
    return sampler, int(steps)


def timed_batch(backend, items, duration: float, options, repeat: int) -> tuple[float, list, float, float]:
    """(median seconds over `repeat` calls, the last call's results, capture seconds of the untimed first call,
    that call's seconds)."""
    started = time.perf_counter()
    first = backend.generate_batch(items, duration, options=options)
    first_s = time.perf_counter() - started
    capture_s = first[0].timings.get("graph_capture_s", 0.0)
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        results = backend.generate_batch(items, duration, options=options)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), results, capture_s, first_s


def suite_row(row: dict, start: tuple[float, float, int], first_s: float, args: argparse.Namespace,
              device) -> dict:
    """The GPU suite's row for one measured row (see the module doc for its warm-up)."""
    total, captured, shapes = start
    scope = f"compiled ({args.compile_scope})" if args.compile else "eager"
    warmup = captured if shapes else max(0.0, first_s - row["s_per_clip"] * row["batch"])
    why = (f"worker start {total:.1f} s, of it {captured:.1f} s capturing {shapes} graph shapes" if shapes
           else f"first call {first_s:.2f} s, no worker-start warm-up")
    return gpu_suite.make_row(
        backend="make_an_audio", variant=f"{scope}{', CUDA graphs' if shapes else ''}",
        device=gpu_suite.torch_device_name(device), dtype=row["dtype"], sampler=row["sampler"], steps=row["steps"],
        duration_s=row["duration_s"], batch=row["batch"], s_per_clip=row["s_per_clip"], warmup_s=warmup,
        peak_gib=row["peak_mem_gib"], notes=f"{why}; median of {args.repeat}; diffusion {row['diffusion_s']} s, "
        f"vocoder {row['vocoder_s']} s for the batch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", type=Path, help="official-layout folder")
    source.add_argument("--random", type=Path, help="write full-size random weights here (once) and use them")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtypes", nargs="+", default=["auto"], help="fp32, bf16, fp16 or auto (one backend each)")
    parser.add_argument("--sampling", type=sampling_arg, nargs="+", default=[("ddim", 100), ("dpmpp", 25)],
                        metavar="SAMPLER:STEPS", help="default: both presets, ddim:100 dpmpp:25")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per row (median reported)")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--compile-scope", default="unet", help="with --compile: unet or blocks (compiled.py)")
    parser.add_argument("--official", type=Path, help="checkout of the official code: time it side by side")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="output folder")
    parser.add_argument("--suite", type=Path, help="also add the rows to the GPU suite run in this folder")
    args = parser.parse_args()

    folder = args.weights
    if args.random:
        write_random(args.random)
        folder = args.random

    from tag_make_an_audio.backend import MakeAnAudioBackend
    from tagcore import GenerationItem

    warmup = ",".join(f"{args.duration:g}:{batch}" for batch in args.batch)
    backends, starts = {}, {}
    for dtype in args.dtypes:
        backend = MakeAnAudioBackend({"weights": str(folder), "device": args.device, "dtype": dtype,
                                      "compile": args.compile, "compile_scope": args.compile_scope,
                                      "warmup": warmup})
        started = time.perf_counter()
        backend.ensure_loaded()
        name = str(backend.model.dtype).replace("torch.", "")
        captured = sum(e.capture_s for e in backend.graphs.entries.values()) if backend.graphs else 0.0
        starts[name] = (time.perf_counter() - started, captured, len(backend.graphs.entries) if backend.graphs else 0)
        backends[name] = backend
    model = next(iter(backends.values())).model
    device = model.device
    sizes = ", ".join(f"{part} {sum(p.numel() for p in getattr(model, part).parameters()) / 1e6:.1f}M"
                      for part in ("text_encoder", "unet", "vae"))

    official = None
    if args.official:
        from tag_bench.maa_official import OfficialPipeline

        official = OfficialPipeline(args.official.resolve(), folder.resolve(), device)
        official.generate("warm up", seconds=int(args.duration), steps=1, guidance=3.0, batch=1, seed=0)

    load_before = os.getloadavg()[0]
    rows, fp32_clips = [], {}
    for sampler, steps in args.sampling:
        for batch in args.batch:
            items = [GenerationItem(f"{PROMPT} {i}" if i else PROMPT, seed=i) for i in range(batch)]
            group = []
            for name, backend in backends.items():
                if device.type == "cuda":
                    import torch

                    torch.cuda.reset_peak_memory_stats(device)
                options = backend.resolve_request_options({"steps": steps, "sampler": sampler})
                total, results, capture_s, first_s = timed_batch(backend, items, args.duration, options,
                                                                 args.repeat)
                timings = results[0].timings
                row = dict(device=device.type, dtype=name, sampler=sampler, duration_s=args.duration, steps=steps,
                           batch=batch, s_per_clip=round(total / batch, 4),
                           x_realtime=round(args.duration * batch / total, 2),
                           **{k: timings[k] for k in ("text_s", "diffusion_s", "vae_s", "vocoder_s")},
                           first_call_capture_s=capture_s, peak_mem_gib=round(peak_memory_gib(device), 2))
                clip = np.asarray(results[0].candidates[0].samples, dtype=np.float32)
                if batch == 1 and name == "float32":
                    fp32_clips[(sampler, steps)] = clip
                row["_clip"] = clip
                group.append(row)
                gpu_suite.record(args.suite, [suite_row(row, starts[name], first_s, args, device)])
            if official is not None and sampler == "ddim":
                started = time.perf_counter()
                for _ in range(args.repeat):
                    wavs = official.generate(PROMPT, seconds=int(args.duration), steps=steps, guidance=3.0,
                                             batch=batch, seed=0)
                official_s = (time.perf_counter() - started) / args.repeat / batch
                for row in group:
                    row["official_s_per_clip"] = round(official_s, 4)
                    row["tag_over_official"] = round(row["s_per_clip"] / official_s, 3)
                    if batch == 1 and row["dtype"] == "float32":  # same seed, same noise: the clips must agree
                        agree = agreement(row["_clip"], wavs[0])
                        row["max_abs_vs_official"] = f"{agree['max_abs']:.3g}"
                        row["rel_l2_vs_official"] = f"{agree['rel_l2']:.3g}"
            for row in group:
                reference = fp32_clips.get((sampler, steps))
                if batch == 1 and row["dtype"] != "float32" and reference is not None:
                    row["rel_l2_vs_fp32"] = f"{agreement(row['_clip'], reference)['rel_l2']:.3g}"
                del row["_clip"]
                rows.append(row)
                print(row, flush=True)

    some = next(iter(backends.values()))
    warm = "; ".join(f"{name}: {seconds:.1f} s" + (f" ({captured:.1f} s of it capturing {count} graph shapes for "
                                                    f"warmup {warmup})" if count else "")
                     for name, (seconds, captured, count) in starts.items())
    stem = args.out / f"make_an_audio_speed_{device.type}"
    intro = [f"# Make-An-Audio speed ({device_name(device)})", "",
             f"Parameters: {sizes} (official: UNet 160M, VAE 69M; BigVGAN 112M, not counted here: on the CPU its large "
             f"convolutions are held as spectra, not parameters); weights from "
             f"`{'random' if args.random else folder.name}`. Worker start (load + graph warm-up): {warm}. "
             f"s_per_clip = median batch time over {args.repeat} calls / batch, after one untimed call; stage "
             f"columns are for the whole batch (last call); {peak_memory_note(device)}",
             f"Machine load average (1 min) {load_before:.1f} before and {os.getloadavg()[0]:.1f} after the runs.",
             f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC with `uv run "
             f"{'--with pytorch-lightning ' if official else ''}python benchmarks/make_an_audio_speed.py "
             f"{' '.join(shlex.quote(a) for a in sys.argv[1:])}`; TAG ran with CUDA graphs "
             f"{'on' if some.graphs is not None else 'off'}, BigVGAN activations `{some.model.vocoder_activations}`."
             + (f" Official code from `{args.official}` (gen_wav: DDIM, CFG 3), timed after TAG's rows of the same "
                f"steps and batch on the same device; its clip for the same seed is compared with TAG's fp32 clip "
                f"at batch 1." if official else "")]
    for row in rows:
        for field in FIELDS:
            row.setdefault(field, "")
    for path in write_results(stem, FIELDS, rows, intro):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""Make-An-Audio speed: cold load, seconds per clip by steps and batch size, peak memory.

Runs the real backend code at full size. Weights: a folder in the official layout (`--weights DIR`: the real
useful_ckpts, or stand-ins derived with ../shared/make_an_audio/golden/derive_weights.py), or `--random DIR`
to write full-size random weights there first (speed does not depend on the values).

    uv run python benchmarks/make_an_audio_speed.py --random /tmp/maa_full              # GPU defaults
    uv run python benchmarks/make_an_audio_speed.py --weights DIR --device cpu --duration 2 --steps 5 --batch 1 2
    uv run --with pytorch-lightning python benchmarks/make_an_audio_speed.py --weights DIR --official REPO \
        --device cpu --duration 2 --steps 2 --batch 1 --bf16-check

`--official REPO` (a checkout of the official code, never part of this project) also times the official gen_wav
path in the same process on the same device, alternating with TAG row by row, and reports how far TAG's batch-1
clip is from the official one for the same seed (max abs, relative L2; DDIM only, the official sampler).
`--bf16-check` loads a bf16 copy and reports the relative L2 between its batch-1 clip and the fp32 clip.

Writes make_an_audio_speed_<device>.md and .csv (one row per steps x batch) to `--out` (default benchmarks/results/).
"""
from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from tag_bench.maa_official import agreement
from tag_bench.script_output import device_name, peak_memory_gib, peak_memory_note, write_results

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
FIELDS = ["device", "dtype", "sampler", "duration_s", "steps", "batch", "s_per_clip", "x_realtime", "text_s",
          "diffusion_s", "vae_s", "vocoder_s", "graph_capture_s", "peak_mem_gib", "official_s_per_clip",
          "tag_over_official", "max_abs_vs_official", "rel_l2_vs_official", "rel_l2_bf16_vs_fp32"]
PROMPT = "a dog barks in the rain"


def write_random(folder: Path) -> None:
    from tag_testkit.make_an_audio_tiny import FULL, TINY_WORDS, write_folder

    if not (folder / "maa1_full.ckpt").is_file():
        write_folder(folder, FULL, TINY_WORDS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", type=Path, help="official-layout folder")
    source.add_argument("--random", type=Path, help="write full-size random weights here (once) and use them")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--sampler", default="ddim", choices=("ddim", "dpmpp"))
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 25])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--official", type=Path, help="checkout of the official code: time it side by side")
    parser.add_argument("--bf16-check", action="store_true", help="report bf16 vs fp32 relative L2 (batch 1)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="output folder")
    args = parser.parse_args()

    folder = args.weights
    if args.random:
        write_random(args.random)
        folder = args.random

    from tag_make_an_audio.backend import MakeAnAudioBackend
    from tagcore import GenerationItem

    backend = MakeAnAudioBackend({"weights": str(folder), "device": args.device, "dtype": args.dtype,
                                  "compile": args.compile})
    started = time.perf_counter()
    backend.ensure_loaded()
    load_s = time.perf_counter() - started
    model = backend.model
    device, dtype = model.device, str(model.dtype).replace("torch.", "")
    sizes = ", ".join(f"{name} {sum(p.numel() for p in getattr(model, name).parameters()) / 1e6:.1f}M"
                      for name in ("text_encoder", "unet", "vae", "vocoder"))
    warm = backend.resolve_request_options({"steps": 1, "sampler": args.sampler})
    backend.generate_batch([GenerationItem("warm up", seed=0)], min(args.duration, 2.0), options=warm)

    official = None
    if args.official:
        from tag_bench.maa_official import OfficialPipeline

        official = OfficialPipeline(args.official.resolve(), folder.resolve(), device)
        official.generate("warm up", seconds=int(args.duration), steps=1, guidance=3.0, batch=1, seed=0)
    bf16 = None
    if args.bf16_check:
        bf16 = MakeAnAudioBackend({"weights": str(folder), "device": args.device, "dtype": "bf16"})
        bf16.ensure_loaded()

    load_before = os.getloadavg()[0]
    rows = []
    for steps in args.steps:
        for batch in args.batch:
            if device.type == "cuda":
                import torch

                torch.cuda.reset_peak_memory_stats(device)
            options = backend.resolve_request_options({"steps": steps, "sampler": args.sampler})
            items = [GenerationItem(f"{PROMPT} {i}" if i else PROMPT, seed=i) for i in range(batch)]
            t0 = time.perf_counter()
            results = backend.generate_batch(items, args.duration, options=options)
            total = time.perf_counter() - t0
            timings = results[0].timings
            row = dict(device=device.type, dtype=dtype, sampler=args.sampler, duration_s=args.duration, steps=steps,
                       batch=batch, s_per_clip=round(total / batch, 3),
                       x_realtime=round(args.duration * batch / total, 3),
                       **{k: timings[k] for k in ("text_s", "diffusion_s", "vae_s", "vocoder_s")},
                       graph_capture_s=timings.get("graph_capture_s", 0.0),
                       peak_mem_gib=round(peak_memory_gib(device), 2))
            clip = np.asarray(results[0].candidates[0].samples, dtype=np.float32)
            if official is not None and args.sampler == "ddim":
                t0 = time.perf_counter()
                wavs = official.generate(PROMPT, seconds=int(args.duration), steps=steps, guidance=3.0, batch=batch,
                                         seed=0)
                row["official_s_per_clip"] = round((time.perf_counter() - t0) / batch, 3)
                row["tag_over_official"] = round(row["s_per_clip"] / row["official_s_per_clip"], 3)
                if batch == 1:  # same seed, same noise: the clips must agree
                    agree = agreement(clip, wavs[0])
                    row["max_abs_vs_official"], row["rel_l2_vs_official"] = (f"{agree['max_abs']:.3g}",
                                                                             f"{agree['rel_l2']:.3g}")
            if bf16 is not None and batch == 1:
                half = bf16.generate_batch(items, args.duration, options=options)[0].candidates[0].samples
                row["rel_l2_bf16_vs_fp32"] = f"{agreement(np.asarray(half, dtype=np.float32), clip)['rel_l2']:.3g}"
            rows.append(row)
            print(row, flush=True)

    stem = args.out / f"make_an_audio_speed_{device.type}"
    intro = [f"# Make-An-Audio speed ({device_name(device)})", "",
             f"Parameters: {sizes} (official: UNet 160M, VAE 69M, BigVGAN 112M); weights from "
             f"`{'random' if args.random else folder.name}`; cold load "
             f"{load_s:.1f} s (modules built on the meta device, checkpoint memory-mapped); timings are wall clock "
             f"for one `generate_batch`; s_per_clip = batch time / batch; stage columns are for the whole batch; "
             f"{peak_memory_note(device)}",
             f"Machine load average (1 min) {load_before:.1f} before and {os.getloadavg()[0]:.1f} after the runs "
             f"(other jobs on the same cores slow every stage accordingly).",
             f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC with `uv run "
             f"{'--with pytorch-lightning ' if official else ''}python benchmarks/make_an_audio_speed.py {' '.join(shlex.quote(a) for a in sys.argv[1:])}`; TAG ran with "
             f"CUDA graphs {'on' if backend.graphs is not None else 'off'}, BigVGAN activations "
             f"`{model.vocoder_activations}`."
             + (f" Official code from `{args.official}` (gen_wav: DDIM, CFG 3), timed right after each TAG row "
                f"on the same device; its clip for the same seed is compared at batch 1." if official else "")]
    for row in rows:
        for field in FIELDS:
            row.setdefault(field, "")
    for path in write_results(stem, FIELDS, rows, intro):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

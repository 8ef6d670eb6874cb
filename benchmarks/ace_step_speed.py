"""Seconds per song for ACE-Step 1.5 XL turbo through the `ace_step` backend (the diffusers AceStepPipeline), at
batch 1 and 4, for a 60 s and a 240 s song, with lyrics.

Weights are random, written once in the hub layout (`AceStepPipeline.save_pretrained`): `--size full` at the XL
turbo's published shape (speed does not depend on the values), `--size tiny` the tests' tiny pipeline
(tag_testkit.ace_step_tiny) for a quick run of the whole path on a CPU. The anchor is ACE-Step's own figure: a
full song in under 2 s on an A100 at 8 steps, in under 4 GB (the 2B turbo; the 4B XL needs more memory).

Full-size shape (bf16 on disk): DiT 32 layers of 2560 (32 heads of 128, 8 key/value heads), fed by the 2B
model's 2048-wide condition encoder (diffusers' `encoder_hidden_size`); the DiT's MLP width (9728) is inferred
from the published 4B parameter count, not read from a released config. Text encoder: a Qwen3-Embedding-0.6B
shaped Qwen3 model (the tokenizer is the tests' byte-level one: prompts encode to more tokens than with Qwen's,
which makes the text encoder's share a little slower, not faster). VAE: the Oobleck at 48 kHz, 1920-sample hop,
64 latent channels. No audio tokenizer (text-to-music does not use it).

    uv run python benchmarks/ace_step_speed.py --size full --device cuda
    uv run python benchmarks/ace_step_speed.py --size tiny --durations 10 --batch 1 2 --steps 2

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
FIELDS = ("size", "params_m", "device", "dtype", "duration_s", "steps", "batch", "s_per_clip", "x_realtime",
          "peak_mem_gib")
LYRICS = "[verse]\nOur cat sleeps all day in the sun\n[chorus]\nOh, our cat, our lazy cat\n" * 4
XL_DIT = dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=32, num_attention_heads=32,
              num_key_value_heads=8, head_dim=128, encoder_hidden_size=2048)
TEXT_ENCODER = dict(vocab_size=151669, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                    num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=32768)
ANCHOR = "anchor (ACE-Step, 2B turbo): a full song < 2 s on an A100 at 8 steps, < 4 GB"


def write_full(folder: Path) -> None:
    """The XL turbo's shape with random bf16 weights, saved in the hub layout."""
    import torch
    from diffusers import (AceStepPipeline, AceStepTransformer1DModel, AutoencoderOobleck,
                           FlowMatchEulerDiscreteScheduler)
    from diffusers.pipelines.ace_step import AceStepConditionEncoder
    from tag_testkit.ace_step_tiny import _tokenizer
    from transformers import Qwen3Config, Qwen3Model

    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)  # half the memory and disk; the backend loads it in bf16 anyway
    try:
        pipe = AceStepPipeline(
            vae=AutoencoderOobleck(downsampling_ratios=[2, 4, 4, 6, 10], sampling_rate=48000),
            text_encoder=Qwen3Model(Qwen3Config(**TEXT_ENCODER)).eval(), tokenizer=_tokenizer(),
            transformer=AceStepTransformer1DModel(**XL_DIT, is_turbo=True, model_version="turbo"),
            condition_encoder=AceStepConditionEncoder(),
            scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0))
        pipe.save_pretrained(str(folder))
    finally:
        torch.set_default_dtype(torch.float32)


def write_weights(size: str, root: Path) -> Path:
    """The pipeline's random-weight folder under `root`, written on first use."""
    from tag_testkit.ace_step_tiny import write

    folder = root / f"ace-step-xl-turbo-{size}"
    if not (folder / "model_index.json").is_file():
        started = time.perf_counter()
        if size == "full":
            write_full(folder)
        else:
            write(folder)
        print(f"wrote {folder} in {time.perf_counter() - started:.0f} s", flush=True)
    return folder


def measure(args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    """Every duration x batch row (the backend loaded once, after one untimed 1-step 10 s song); the load time."""
    import torch

    from tag_bench import gpu_suite
    from tag_bench.script_output import peak_memory_gib
    from tagcore import GenerationItem
    from tagcore.plugins import backends

    folder = write_weights(args.size, args.weights_root)
    backend = backends().get("ace_step")({"weights": str(folder), "device": args.device, "dtype": args.dtype})
    started = time.perf_counter()
    backend.ensure_loaded()
    load = f"{time.perf_counter() - started:.1f} s"
    pipe, device = backend.model, backend.device
    params = sum(p.numel() for m in pipe.components.values() if isinstance(m, torch.nn.Module)
                 for p in m.parameters()) / 1e6
    started = time.perf_counter()
    backend.generate_batch([GenerationItem("warm up", 0)], 10.0,
                           options=backend.resolve_request_options({"steps": 1, "lyrics": LYRICS}))
    warmup = time.perf_counter() - started
    rows = []
    for duration in args.durations:
        for batch in args.batch:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            items = [GenerationItem("cheerful folk song about our cat, acoustic guitar", seed=i) for i in range(batch)]
            options = backend.resolve_request_options({"lyrics": LYRICS, **({"steps": args.steps} if args.steps
                                                                                else {})})
            t0 = time.perf_counter()
            results = backend.generate_batch(items, duration, options=options)
            total = time.perf_counter() - t0
            meta = results[0].metadata
            row = dict(size=args.size, params_m=round(params, 1), device=device.type, dtype=meta["dtype"],
                       duration_s=duration, steps=meta["steps"], batch=batch, s_per_clip=round(total / batch, 3),
                       x_realtime=round(duration * batch / total, 2), peak_mem_gib=round(peak_memory_gib(device), 2))
            rows.append(row)
            print(row, flush=True)
            gpu_suite.record(args.suite, [gpu_suite.make_row(
                backend="ace_step", variant=f"xl-turbo ({args.size})", device=gpu_suite.torch_device_name(device),
                dtype=row["dtype"], sampler=type(pipe.scheduler).__name__, steps=row["steps"], duration_s=duration,
                batch=batch, s_per_clip=total / batch, warmup_s=warmup, peak_gib=row["peak_mem_gib"],
                notes=f"{params:.0f} M params; {row['x_realtime']}x real time; pipeline calls "
                f"{meta['batch_rows']} rows at once; warm-up: the first call (10 s, 1 step) after a {load} load; "
                f"{ANCHOR}")])
    backend.unload()
    return rows, load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("tiny", "full"), default="full")
    parser.add_argument("--weights-root", type=Path, default=Path("/tmp/tag-ace-step-random"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--durations", type=float, nargs="+", default=[60.0, 240.0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--steps", type=int, default=0, help="sampling steps (0: the backend's default, 8)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--write-only", action="store_true", help="write the weights and stop")
    parser.add_argument("--suite", type=Path, help="also add the rows to the GPU suite run in this folder")
    args = parser.parse_args()
    if args.write_only:
        write_weights(args.size, args.weights_root)
        return

    from tag_bench.script_output import device_name, peak_memory_note, write_results
    from tagcore.devices import resolve_device

    load_before = os.getloadavg()[0]
    rows, load = measure(args)
    device = resolve_device(args.device)
    intro = [f"# ACE-Step 1.5 XL turbo speed ({device_name(device)})", "",
             f"Command: `uv run python benchmarks/ace_step_speed.py {' '.join(sys.argv[1:])}`, "
             f"{time.strftime('%Y-%m-%d', time.gmtime())}. Random weights in the hub layout (size {args.size}, "
             f"see the script's docstring); load {load}. s_per_clip = wall-clock time of one `generate_batch` / "
             f"batch, lyrics included; {peak_memory_note(device)} {ANCHOR}.",
             f"Machine load average (1 min) {load_before:.1f} before and {os.getloadavg()[0]:.1f} after the runs."]
    for path in write_results(args.out / f"ace_step_speed_{args.size}_{device.type}", FIELDS, rows, intro):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""AudioGen / MusicGen speed benchmark: our decode loop (`decoder=tag`) and audiocraft's own, side by side in one run.

Runs the `audiogen` (or `musicgen`) backend (the same loader and sampler users get) on one random-weight model
written in audiocraft's exported format: with `decoder=tag`, and with `decoder=audiocraft` for the batch sizes of
`--reference-batches`, alternating the two on every repeat so machine load hits both alike. Shapes: the full
AudioGen-medium architecture (`--shape medium`, the default when CUDA is present), MusicGen small / medium
(`musicgen-small`, `musicgen-medium`: 32 kHz EnCodec, 30 s window), a small deep model for the CPU target
(`--shape deep`: 8 layers, dim 64, cross-attention) or the tests' tiny ones (`tiny`, `musicgen-tiny`). Random
weights give the real cost per token because every step runs the whole network. The T5 text encoder is replaced
by a lookup table (it runs once per request).

    uv run python benchmarks/audiogen_speed.py --shape deep --duration 4 --batches 1,4 --repeats 3 --threads 1
    python3 benchmarks/audiogen_speed.py --shape medium --batches 1,4,16 --reference-batches 1   # on a GPU
    python3 benchmarks/audiogen_speed.py --shape medium --dtype fp32 --batches '' --reference-batches none \
        --token-check 2                                  # greedy tokens, our loop vs audiocraft's, on a GPU

Rows: seconds per batch for each decoder, and `speedup` = audiocraft's time / ours. The first request of each
batch size on CUDA captures our CUDA graphs: that cost is its own `warm-up` row, not part of the timed rows.
`--token-check SECONDS` decodes one prompt greedily (temperature 0) with both loops on the same loaded model
and reports the share of identical tokens and the first frame that differs.
Writes audiogen_speed_<shape>_<device>.md and .csv to `--out` (default benchmarks/results/); `--suite DIR` adds
the rows to a GPU suite run there too (tag_bench.gpu_suite).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tag_bench import gpu_suite
from tag_bench.script_output import device_name, peak_memory_gib, peak_memory_note, write_results

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).parent / "results"
FIELDS = ["decoder", "batch", "duration_s", "wall_s", "s_per_10s_clip", "audio_s_per_wall_s", "speedup",
          "peak_mem_gib"]
DECODERS = ("audiocraft", "tag")
SHAPES = ("tiny", "deep", "medium", "musicgen-tiny", "musicgen-small", "musicgen-medium")
PROMPT = "benchmark sound"


def _shape(name: str):
    from tag_audiogen.synthetic import AUDIOGEN_MEDIUM, ModelShape

    music = dict(sample_rate=32000, ratios=(8, 5, 4, 4))  # MusicGen's 32 kHz EnCodec, hop 640 (50 Hz)
    released = dict(seanet_filters=64, seanet_dimension=128, card=2048, segment_duration=30.0)
    return {"medium": AUDIOGEN_MEDIUM, "tiny": ModelShape(), "deep": ModelShape(dim=64, num_heads=4, num_layers=8),
            # MusicGen.__init__ sets extend_stride 18, which audiocraft requires to be shorter than the window.
            "musicgen-tiny": ModelShape(**music, segment_duration=20.0),
            "musicgen-small": ModelShape(**music, **released, dim=1024, num_heads=16, num_layers=24),
            "musicgen-medium": ModelShape(**music, **released, dim=1536, num_heads=24, num_layers=48)}[name]


def family(shape: str) -> str:
    return "musicgen" if shape.startswith("musicgen") else "audiogen"


def weights_folder(shape: str, root: Path) -> Path:
    """The shape's random model under `root`, exported on first use (AudioGen-medium takes ~50 s)."""
    from tag_audiogen.synthetic import export_random_model

    folder = root / f"{family(shape)}-{shape}-random"
    if not (folder / "state_dict.bin").is_file():
        started = time.perf_counter()
        export_random_model(folder, _shape(shape))
        print(f"wrote {folder} in {time.perf_counter() - started:.0f} s", flush=True)
    return folder


def _logits_agreement(backend) -> float:
    """Relative L2 between our per-step CFG logits and audiocraft's, teacher-forced on random codes (the
    numerical check behind "same tokens": exact up to rounding in fp32, bf16 noise on a GPU)."""
    import torch
    from audiocraft.modules.conditioners import ConditioningAttributes

    from tag_audiogen.decode_loop import teacher_forced_logits

    lm = backend.model.lm
    codes = torch.randint(0, lm.card, (1, lm.num_codebooks, 100), generator=torch.Generator().manual_seed(0))
    attributes = [ConditioningAttributes(text={"description": PROMPT})]
    ours, reference = teacher_forced_logits(backend.model, attributes, codes.to(backend.device), 3.0)
    return float((ours - reference).norm() / reference.norm())


def greedy_token_check(backend, seconds: float) -> tuple[float, int]:
    """(share of identical tokens, first differing frame or -1): our loop (graphs on CUDA) vs audiocraft's
    `_generate_tokens`, greedy (temperature 0), one prompt, on the backend's loaded model."""
    import torch
    from audiocraft.modules.conditioners import ConditioningAttributes

    from tag_audiogen.decode_loop import EagerSteps, generate_tokens
    from tag_audiogen.sampling import SamplingParams

    model, params = backend.model, SamplingParams(use_sampling=False, cfg_coef=3.0)
    model.set_generation_params(use_sampling=False, duration=seconds, cfg_coef=3.0,
                                extend_stride=min(2.0, backend.window / 2))
    attributes = [ConditioningAttributes(text={"description": PROMPT})]
    torch.manual_seed(0)
    with torch.no_grad():
        reference = model._generate_tokens(attributes, None, False)
    if backend.graphs is not None:
        steps: Any = backend.graphs.steps(params)
    else:
        steps = EagerSteps(backend.static_lm, params, next(model.lm.parameters()).dtype, backend.device)
    ours = generate_tokens(model, steps, attributes, None, params, [torch.Generator(backend.device).manual_seed(0)])
    same = ours == reference
    differing = (~same).any(dim=1)[0].nonzero()
    return float(same.float().mean()), int(differing[0]) if len(differing) else -1


def parse_args(cuda: bool) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=SHAPES, default="medium" if cuda else "deep")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if cuda else "cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--batches", default="1,4,16", help="comma-separated batch sizes to time ('' for none)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--reference-batches", default="",
                        help="batch sizes audiocraft's loop also runs (default: all; 'none': none); on a GPU it "
                             "takes ~60 s per 10 s clip whatever the batch, so e.g. 1 saves device time")
    parser.add_argument("--token-check", type=float, default=0.0, metavar="SECONDS",
                        help="also decode a clip this long greedily with both loops and compare the tokens")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--weights-root", type=Path, help="keep the exported model here (reused next time)")
    parser.add_argument("--write-only", action="store_true", help="export the model to --weights-root and stop")
    parser.add_argument("--out", type=Path, default=RESULTS, help="output folder")
    parser.add_argument("--suite", type=Path, help="also add the rows to the GPU suite run in this folder")
    args = parser.parse_args()
    if args.write_only and not args.weights_root:
        parser.error("--write-only needs --weights-root")
    batches = [int(b) for b in args.batches.split(",") if b]
    args.batch_sizes = batches
    args.reference = set() if args.reference_batches == "none" else {
        int(b) for b in (args.reference_batches or args.batches).split(",") if b}
    return args


def load_backends(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    from tag_audiogen.backend import AudioGenBackend, MusicGenBackend

    cls = MusicGenBackend if family(args.shape) == "musicgen" else AudioGenBackend
    backends = {}
    for decoder in DECODERS if args.reference else ("tag",):
        backends[decoder] = cls({"weights": str(folder), "device": args.device, "dtype": args.dtype,
                                 "decoder": decoder})
        backends[decoder].ensure_loaded()
    return backends


def main() -> None:
    import torch

    cuda = torch.cuda.is_available()
    args = parse_args(cuda)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.write_only:
        weights_folder(args.shape, args.weights_root)
        return
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        backends = load_backends(args, weights_folder(args.shape, args.weights_root or Path(tmp)))
    tag = backends["tag"]
    options = tag.resolve_request_options({})
    params = sum(p.numel() for p in tag.model.lm.parameters()) / 1e6
    dtype = gpu_suite.dtype_name(next(tag.model.lm.parameters()).dtype)
    for backend in backends.values():
        backend.generate("warm up", 1.0, seed=0)
    relative_l2 = _logits_agreement(tag)
    print(f"teacher-forced logits, ours vs audiocraft: relative L2 {relative_l2:.2e}", flush=True)
    base = dict(backend=tag.name, device=gpu_suite.torch_device_name(tag.device), dtype=dtype)
    suite_rows = []
    if args.token_check:
        share, first = greedy_token_check(tag, args.token_check)
        note = (f"greedy tokens, our loop vs audiocraft's on one model: {share:.2%} identical, "
                + (f"first difference at frame {first}" if first >= 0 else "no difference"))
        print(note, flush=True)
        suite_rows.append(gpu_suite.make_row(**base, variant=f"{args.shape}, tokens ours vs audiocraft",
                                             sampler="greedy", duration_s=args.token_check, batch=1, notes=note))
        gpu_suite.record(args.suite, suite_rows[-1:])
    rows = timed_rows(args, backends, options, cuda, relative_l2, params, base)
    command = " ".join(["uv run python benchmarks/audiogen_speed.py", *sys.argv[1:]])
    intro = [f"# {tag.name} speed: our decode loop vs audiocraft's ({args.shape} architecture, random weights)", "",
             f"- device: {device_name(args.device)} ({platform.machine()}, {os.cpu_count()} cores)",
             f"- dtype: {args.dtype}; LM parameters: {params:.2f} M",
             f"- options: audiocraft defaults (top_k 250, cfg_coef 3.0); clip length {args.duration:g} s; "
             f"best of {args.repeats}, the two decoders alternating", f"- {peak_memory_note(args.device)}",
             "- speedup: audiocraft's wall time / this row's (same batch, same run)",
             f"- teacher-forced CFG logits over 100 frames, our step vs audiocraft's forward: relative L2 "
             f"{relative_l2:.2e}", *(f"- {row['notes']}" for row in suite_rows),
             f"- machine load average (1 min) at start / end: {load_before:.1f} / {os.getloadavg()[0]:.1f}",
             f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}", f"- command: `{command}`"]
    paths = write_results(args.out / f"audiogen_speed_{args.shape}_{args.device}", FIELDS, rows, intro)
    print(paths[-1].read_text())


def timed_rows(args: argparse.Namespace, backends: dict[str, Any], options: Any, cuda: bool, relative_l2: float,
               params: float, base: dict[str, Any]) -> list[dict[str, Any]]:
    """Every batch size's rows (warm-up, then the best of `repeats` per decoder); suite rows recorded as they come."""
    import torch

    from tagcore import GenerationItem

    def run(decoder: str, items: list) -> float:
        started = time.perf_counter()
        backends[decoder].generate_batch(items, args.duration, options=options)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - started

    rows = []
    tokens = int(args.duration * backends["tag"].model.frame_rate)
    for batch in args.batch_sizes:
        decoders = DECODERS if batch in args.reference else ("tag",)
        items = [GenerationItem(f"{PROMPT} {i % 4}", seed=i) for i in range(batch)]
        warmup: float | str = ""
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
            speedup = round(best["audiocraft"] / best[decoder], 2) if "audiocraft" in best else ""
            rows.append({"decoder": decoder, "batch": batch, "duration_s": args.duration,
                         "wall_s": round(best[decoder], 3),
                         "s_per_10s_clip": round(best[decoder] / batch * 10.0 / args.duration, 3),
                         "audio_s_per_wall_s": round(batch * args.duration / best[decoder], 3),
                         "speedup": speedup, "peak_mem_gib": round(peaks[decoder], 2)})
            print(rows[-1], flush=True)
            note = (f"LM {params:.0f} M params; {best[decoder] / tokens * 1e3:.2f} ms a token step; best of "
                    f"{args.repeats}; teacher-forced logits vs audiocraft's forward: relative L2 {relative_l2:.2e}"
                    + (f"; {speedup}x audiocraft's loop" if speedup != "" else ""))
            gpu_suite.record(args.suite, [gpu_suite.make_row(
                **base, variant=f"{args.shape}, decoder={decoder}", sampler="top_k 250, cfg 3", steps=tokens,
                duration_s=args.duration, batch=batch, s_per_clip=best[decoder] / batch,
                warmup_s=warmup if decoder == "tag" else "", peak_gib=round(peaks[decoder], 2), notes=note)])
    return rows


if __name__ == "__main__":
    main()

"""Make-An-Audio's UNet under torch.compile: warm-up and speed of each compile scope (compiled.py), side by side.

    uv run python benchmarks/make_an_audio_compile.py --weights DIR --device cpu --dtype fp32 --shapes 2:1 2:8 1:1
    python3 benchmarks/make_an_audio_compile.py --weights DIR --device cuda --dtype bf16      # 10:1 10:8 5:1

Each scope starts in a fresh process on an empty compile cache ("cold": a worker's first start on a machine),
then again in another fresh process on the cache the first one filled ("restart"). In each process the guided
UNet call (CFG: 2 x batch rows, as the sampling loop makes it) runs for each SECONDS:BATCH shape in turn:

- first_call_s: the first call, i.e. what compiling this shape costs a worker (plus one call);
- call_ms: a call afterwards, median; on CUDA replayed from a CUDA graph of 10 calls as the product replays its
  loop (device events), on the CPU eager (wall clock). eager_call_ms is the same for the uncompiled UNet;
- rel_l2: how far the compiled output is from the uncompiled one on the same inputs.

A block that falls back to eager (torch's recompile limit) fails its row rather than passing for compiled.
Writes make_an_audio_compile_<device>.md and .csv to `--out` (default benchmarks/results/); `--suite DIR` adds
each process's rows to a GPU suite run there (tag_bench.gpu_suite: warm-up = first_call_s, no seconds per clip).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tag_bench import gpu_suite
from tag_bench.script_output import device_name, write_results

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
FIELDS = ["device", "dtype", "scope", "start", "seconds", "batch", "first_call_s", "call_ms", "eager_call_ms",
          "eager_over_compiled", "rel_l2", "error"]
STARTS = ("cold", "restart")


def shape_arg(text: str) -> tuple[float, int]:
    seconds, _, batch = text.partition(":")
    try:
        return float(seconds), int(batch or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not SECONDS:BATCH") from None


def measure(args: argparse.Namespace) -> None:
    """Child process: load, time the uncompiled calls, compile `args.child`, time each shape; one JSON line each."""
    import torch

    from tag_make_an_audio import model as maa
    from tag_make_an_audio.compiled import compile_unet
    from tagcore.devices import resolve_dtype

    device = torch.device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    model = maa.load(args.weights, device, dtype)
    gen = torch.Generator(device).manual_seed(0)
    inputs = []
    for seconds, batch in args.shapes:
        rows = 2 * batch
        inputs.append((torch.randn(model.latent_shape(rows, maa.latent_width(seconds)), device=device,
                                   generator=gen).to(dtype),
                       torch.full((rows,), 500, device=device, dtype=torch.long),
                       torch.randn(rows, maa.MAX_TOKENS, model.context_dim, device=device, generator=gen).to(dtype)))

    def call(unet: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return unet(x, t, encoder_hidden_states=context, return_dict=False)[0]

    def call_ms(fn) -> float:
        if device.type == "cuda":
            from tag_bench.cuda_timing import replay_ms

            return replay_ms(fn)[1]
        times = []
        for _ in range(args.calls):
            started = time.perf_counter()
            fn()
            times.append((time.perf_counter() - started) * 1e3)
        return statistics.median(times)

    with torch.inference_mode():
        eager = [(call(model.unet, *shape).float(), call_ms(lambda s=shape: call(model.unet, *s))) for shape in inputs]
        unet = compile_unet(model.unet, args.child)
        for (seconds, batch), shape, (want, eager_ms) in zip(args.shapes, inputs, eager):
            row = {"seconds": seconds, "batch": batch, "eager_call_ms": round(eager_ms, 3)}
            try:
                with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
                    started = time.perf_counter()
                    got = call(unet, *shape).float()
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    row["first_call_s"] = round(time.perf_counter() - started, 2)
                    row["call_ms"] = round(call_ms(lambda s=shape: call(unet, *s)), 3)
                row["eager_over_compiled"] = round(eager_ms / row["call_ms"], 3)
                row["rel_l2"] = f"{((got - want).norm() / want.norm()).item():.2e}"
            except Exception as exc:  # report the shape, go on with the others
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            print("ROW " + json.dumps(row), flush=True)


def run_child(args: argparse.Namespace, scope: str, cache: Path) -> list[dict]:
    """One fresh process for `scope` on the compile cache `cache`; its rows (an error row if it died)."""
    command = [sys.executable, __file__, "--child", scope, "--weights", str(args.weights), "--device", args.device,
               "--dtype", args.dtype, "--calls", str(args.calls),
               "--shapes", *(f"{seconds:g}:{batch}" for seconds, batch in args.shapes)]
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache))
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    rows = [json.loads(line[4:]) for line in done.stdout.splitlines() if line.startswith("ROW ")]
    if done.returncode or not rows:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        rows.append({"error": f"exit {done.returncode}: {tail[:200]}"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True, help="official-layout folder (full size)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bf16", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--scopes", nargs="+", default=["unet", "blocks"])
    parser.add_argument("--shapes", type=shape_arg, nargs="+", default=[(10.0, 1), (10.0, 8), (5.0, 1)],
                        metavar="SECONDS:BATCH", help="clip shapes in the order a worker meets them")
    parser.add_argument("--calls", type=int, default=3, help="timed calls per shape on the CPU (median)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--suite", type=Path, help="also add the rows to the GPU suite run in this folder")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure(args)
        return

    rows, totals = [], {}
    with tempfile.TemporaryDirectory(prefix="tag-compile-bench-") as caches:
        for scope in args.scopes:
            for start in STARTS:
                measured = run_child(args, scope, Path(caches) / scope)
                gpu_suite.record(args.suite, [suite_row(args, scope, start, row) for row in measured])
                for row in measured:
                    row = {"device": args.device, "dtype": args.dtype, "scope": scope, "start": start, **row}
                    rows.append({field: row.get(field, "") for field in FIELDS})
                    print(rows[-1], flush=True)
                    totals[scope, start] = totals.get((scope, start), 0.0) + float(row.get("first_call_s") or 0)
                write(args, rows, totals)  # after every process: a run cut short still leaves its rows


def suite_row(args: argparse.Namespace, scope: str, start: str, row: dict) -> dict:
    """The GPU suite's row for one shape of one process: its warm-up is the shape's first (compiling) call."""
    import torch

    from tagcore.devices import resolve_dtype

    if row.get("error"):
        note = f"failed: {row['error']}"
    else:
        note = (f"guided UNet call (CFG, 2 x batch rows) {row['call_ms']} ms compiled, {row['eager_call_ms']} ms "
                f"eager; rel L2 vs eager {row['rel_l2']}; warm-up = this shape's first call, shapes in order "
                + " ".join(f"{seconds:g}:{batch}" for seconds, batch in args.shapes))
    return gpu_suite.make_row(
        backend="make_an_audio", variant=f"compile scope {scope}, {start}",
        device=gpu_suite.torch_device_name(args.device),
        dtype=gpu_suite.dtype_name(resolve_dtype(args.dtype, torch.device(args.device))),
        duration_s=row.get("seconds", ""), batch=row.get("batch", ""), warmup_s=row.get("first_call_s", ""),
        notes=note)


def write(args: argparse.Namespace, rows: list[dict], totals: dict[tuple[str, str], float]) -> None:
    """The results so far, with each scope's warm-up (the sum of its first calls) as a ratio to the first scope's."""
    import torch

    base = args.scopes[0]
    summary = "; ".join(
        f"{scope} {start} {seconds:.1f} s" + (f" ({seconds / totals[base, start]:.2f}x {base})"
                                              if scope != base and totals.get((base, start)) else "")
        for (scope, start), seconds in totals.items())
    shapes = " ".join(f"{seconds:g}:{batch}" for seconds, batch in args.shapes)
    device = torch.device(args.device)
    stem = args.out / f"make_an_audio_compile_{device.type}"
    intro = [f"# Make-An-Audio UNet compile scopes ({device_name(device)}, torch {torch.__version__})",
             "",
             f"Guided UNet call (2 x batch rows), {args.dtype}, weights `{args.weights.name}`, shapes {shapes} "
             f"(seconds:batch) in that order in one process. Warm-up, the sum of first calls: {summary}. "
             f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC with `python "
             f"benchmarks/make_an_audio_compile.py {' '.join(shlex.quote(a) for a in sys.argv[1:])}`."]
    for path in write_results(stem, FIELDS, rows, intro):
        print(f"wrote {path}")

if __name__ == "__main__":
    main()

"""Where a guided Make-An-Audio step spends its GPU time, and which layout / library settings shorten it.

    python3 benchmarks/make_an_audio_gpu_probe.py --weights DIR --out OUT [--compile]
    python3 benchmarks/make_an_audio_gpu_probe.py --weights DIR --out OUT --compile nchw channels_last \
        --batches 8 --compile-only      # the two layouts compiled in one run, nothing else

A diagnosis, not a product benchmark (make_an_audio_speed.py is that): the full-size UNet in bf16 is run as the
sampling loop runs it (CFG as one batch-2N call, 10 s latent, replayed from a CUDA graph of 10 calls) under
several settings, each timed with device events (median of 10 replays, ms per call): NCHW as loaded, cuDNN's
benchmark mode, channels-last activations and weights, fused q/k/v projections, and optionally torch.compile.
The step's kernels are listed by total time (eager profile), and the vocoder, VAE and text encoder are timed
eagerly and graph-replayed at batch 1 and 8. Writes probe.md to OUT and prints it.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch

from tag_bench.cuda_timing import replay_ms

LINES: list[str] = []
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def say(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def top_kernels(fn: Callable[[], object], calls: int = 5, rows: int = 14) -> None:
    try:
        _top_kernels(fn, calls, rows)
    except Exception as exc:
        say(f"profile failed: {type(exc).__name__}: {str(exc)[:150]}")


def _top_kernels(fn: Callable[[], object], calls: int, rows: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    total = sum(e.self_device_time_total for e in events) / calls / 1000
    say(f"kernel time per call {total:.3f} ms in {sum(e.count for e in events) // calls} kernels")
    say("| ms per call | share | launches | kernel |")
    say("|---|---|---|---|")
    for e in sorted(events, key=lambda e: -e.self_device_time_total)[:rows]:
        ms = e.self_device_time_total / calls / 1000
        say(f"| {ms:.3f} | {ms / total:.0%} | {e.count // calls} | {e.key[:110]} |")


def eager_sections(model, args, inputs, call, agreement, width, gen) -> None:  # noqa: ANN001
    """The UNet call under eager settings (timed eagerly and from a graph), its kernels, and the other stages."""
    from tag_make_an_audio import model as maa
    from tag_make_an_audio.checkpoint import Layout

    unet = model.unet
    device = model.device
    say()
    say("## UNet call, bf16, CFG rows (batch 1 -> 2 rows, batch 8 -> 16 rows), 10 s latent")
    say("| setting | batch | eager ms | graph ms | rel L2 vs NCHW |")
    say("|---|---|---|---|---|")

    def measure(name: str, memory_format: torch.memory_format) -> dict[int, float]:
        found = {}
        for batch in inputs:
            try:
                fn = call(batch, memory_format)
                eager, graph = replay_ms(fn)
                found[batch] = graph
                say(f"| {name} | {batch} | {eager:.3f} | {graph:.3f} | {agreement(batch, fn):.1e} |")
            except Exception as exc:
                say(f"| {name} | {batch} | failed: {type(exc).__name__}: {str(exc)[:150]} | | |")
        return found

    results = {"nchw": measure("NCHW", torch.contiguous_format)}
    torch.backends.cudnn.benchmark = True
    results["nchw+bench"] = measure("NCHW + cudnn.benchmark", torch.contiguous_format)
    torch.backends.cudnn.benchmark = False
    unet.to(memory_format=torch.channels_last)
    results["cl"] = measure("channels_last", torch.channels_last)
    torch.backends.cudnn.benchmark = True
    results["cl+bench"] = measure("channels_last + cudnn.benchmark", torch.channels_last)
    try:
        unet.fuse_qkv_projections()
        results["cl+bench+qkv"] = measure("channels_last + bench + fused qkv", torch.channels_last)
        unet.unfuse_qkv_projections()
    except Exception as exc:
        say(f"| fused qkv | - | failed: {type(exc).__name__}: {str(exc)[:150]} | | |")
    say()
    for batch in inputs:
        say(f"### kernels of one UNet call, channels_last + bench, batch {batch}")
        top_kernels(call(batch, torch.channels_last))
        say()
    unet.to(memory_format=torch.contiguous_format)
    torch.backends.cudnn.benchmark = False
    say(f"### kernels of one UNet call, NCHW as loaded, batch {max(inputs)}")
    top_kernels(call(max(inputs), torch.contiguous_format))
    say()

    say("## Other stages, eager vs graph-replayed (ms per call)")
    say("| stage | batch | setting | eager ms | graph ms |")
    say("|---|---|---|---|---|")

    def stage(name: str, batch: int, setting: str, fn: Callable[[], object]) -> None:
        try:
            eager, graph = replay_ms(fn, calls=2)
            say(f"| {name} | {batch} | {setting} | {eager:.3f} | {graph:.3f} |")
        except Exception as exc:
            say(f"| {name} | {batch} | {setting} | failed: {type(exc).__name__}: {str(exc)[:150]} | |")

    maa.accelerate = lambda vocoder, device: "bigvgan-torch"  # a second vocoder on bigvgan's PyTorch activations
    torch_vocoder, _ = maa.load_vocoder(Layout(args.weights), device)
    tokens = model.tokenize(["a dog barks in the rain"]).to(device)
    for batch in (1, 8):
        ids = tokens.expand(batch + 1, -1).contiguous()
        stage("text", batch, "bf16", lambda: model.text_encoder(ids))
        z = torch.randn(batch, 4, 10, width, device=device, generator=gen)
        mel = torch.randn(batch, 80, width * 8, device=device, generator=gen) - 3.0
        for bench in (False, True):
            torch.backends.cudnn.benchmark = bench
            setting = "fp32" + (" + cudnn.benchmark" if bench else "")
            stage("vae", batch, setting, lambda: model.vae.decode(z, return_dict=False)[0])
            stage(f"vocoder {model.vocoder_activations}", batch, setting, lambda: model.vocoder(mel))
            stage("vocoder bigvgan-torch", batch, setting, lambda: torch_vocoder(mel))
    torch.backends.cudnn.benchmark = False
    say()
    say("### kernels of the vocoder, batch 8")
    mel = torch.randn(8, 80, width * 8, device=device, generator=gen) - 3.0
    top_kernels(lambda: model.vocoder(mel), calls=2)
    say()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--compile", nargs="*", choices=LAYOUTS, metavar="LAYOUT",
                        help="also time the UNet under torch.compile in these layouts (nchw, channels_last; "
                             "none named: channels_last), each compiled afresh")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="clips per UNet call (CFG doubles)")
    parser.add_argument("--compile-only", action="store_true", help="skip the eager settings, profiles and stages")
    args = parser.parse_args()

    from tag_make_an_audio import model as maa

    device = torch.device("cuda")
    started = time.perf_counter()
    model = maa.load(args.weights, device, torch.bfloat16)
    say(f"# Make-An-Audio GPU probe ({torch.cuda.get_device_name()}, torch {torch.__version__})")
    say(f"loaded in {time.perf_counter() - started:.1f} s; vocoder activations: {model.vocoder_activations}")
    width = maa.latent_width(10.0)
    unet = model.unet
    gen = torch.Generator(device).manual_seed(0)
    inputs = {}
    for batch in args.batches:
        rows = 2 * batch
        inputs[batch] = (torch.randn(rows, 4, 10, width, device=device, generator=gen).to(torch.bfloat16),
                         torch.full((rows,), 500, device=device, dtype=torch.long),
                         torch.randn(rows, maa.MAX_TOKENS, model.context_dim, device=device, generator=gen)
                         .to(torch.bfloat16))

    def call(batch: int, memory_format: torch.memory_format) -> Callable[[], object]:
        x, t, context = inputs[batch]
        x = x.contiguous(memory_format=memory_format)
        return lambda: unet(x, t, encoder_hidden_states=context, return_dict=False)[0]

    reference = {b: call(b, torch.contiguous_format)().float() for b in inputs}

    def agreement(batch: int, fn: Callable[[], object]) -> float:
        out = fn().float()
        return ((out - reference[batch]).norm() / reference[batch].norm()).item()

    if not args.compile_only:
        eager_sections(model, args, inputs, call, agreement, width, gen)

    for layout in [] if args.compile is None else args.compile or ["channels_last"]:
        say(f"## torch.compile (inductor, default mode) of the UNet, {layout}, cudnn.benchmark")
        torch._dynamo.reset()  # each layout compiles afresh
        torch.backends.cudnn.benchmark = True
        memory_format = LAYOUTS[layout]
        unet.to(memory_format=memory_format)
        compiled = torch.compile(unet)
        for batch in inputs:
            x, t, context = inputs[batch]
            x = x.contiguous(memory_format=memory_format)
            fn = lambda: compiled(x, t, encoder_hidden_states=context, return_dict=False)[0]  # noqa: E731
            begun = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            took = time.perf_counter() - begun
            eager, graph = replay_ms(fn)
            say(f"compiled {layout} batch {batch}: compile {took:.1f} s, eager {eager:.3f} ms, graph {graph:.3f} ms, "
                f"rel L2 vs NCHW {agreement(batch, fn):.1e}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "probe.md").write_text("\n".join(LINES) + "\n")


if __name__ == "__main__":
    with torch.inference_mode():
        main()

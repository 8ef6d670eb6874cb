"""Make-An-Audio's BigVGAN vocoder: TAG's vs the official code's, same weights, same mel, one process.

    uv run python benchmarks/make_an_audio_vocoder.py --weights DIR --official OFFICIAL_REPO [--mel case_a.npz]

DIR: an official-layout folder (real useful_ckpts, or ../shared/make_an_audio/golden/derive_weights.py output);
OFFICIAL_REPO: a checkout of the official code (only its vocoder is imported; needs omegaconf). The mel is the
golden case's (2 s, 128 frames) when `--mel` names its npz, else a seeded random log-mel of `--frames` frames.
Rounds alternate which system runs first; the ratio is TAG / official per round (median reported), so machine
load cancels out as far as it can. Writes make_an_audio_vocoder_<device>.md/.csv to `--out`.
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
import torch

from tag_bench.maa_official import agreement, official_vocoder
from tag_bench.script_output import device_name, write_results

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ["round", "first", "official_s", "tag_s", "ratio"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--official", type=Path, required=True, help="checkout of the official code")
    parser.add_argument("--mel", type=Path, help="npz with a 'mel' entry (N, 1, 80, frames), e.g. golden case_a.npz")
    parser.add_argument("--frames", type=int, default=128, help="random mel length when --mel is not given")
    parser.add_argument("--batch", type=int, default=1, help="vocode this many copies of the mel at once")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    from tag_make_an_audio.checkpoint import Layout
    from tag_make_an_audio.model import load_vocoder

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.mel:
        with np.load(args.mel, allow_pickle=False) as data:
            mel = torch.from_numpy(data["mel"][:, 0]).float()
    else:
        mel = torch.randn(1, 80, args.frames, generator=torch.Generator().manual_seed(0)) - 3.0
    mel = mel.expand(args.batch, -1, -1).contiguous().to(device)
    ours, path = load_vocoder(Layout(args.weights), device)
    theirs = official_vocoder(args.official.resolve(), args.weights.resolve(), device.type)

    def run_tag() -> np.ndarray:
        with torch.inference_mode():
            wav = ours(mel)
        return wav.float().cpu().numpy()

    def run_official() -> np.ndarray:
        return np.asarray(theirs.vocode(mel), dtype=np.float32)

    run_tag(), run_official()  # warm-up: first calls allocate
    load_before = os.getloadavg()[0]
    rows = []
    for r in range(args.rounds):
        order = [("official", run_official), ("tag", run_tag)]
        if r % 2:
            order.reverse()
        seconds = {}
        for name, fn in order:
            started = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds[name] = time.perf_counter() - started
        rows.append(dict(round=r, first=order[0][0], official_s=round(seconds["official"], 4),
                         tag_s=round(seconds["tag"], 4), ratio=round(seconds["tag"] / seconds["official"], 3)))
        print(rows[-1], flush=True)
    agree = agreement(run_tag(), run_official())
    exact = None
    if device.type == "cuda":  # cuDNN's default TF32 rounds both sides' convolutions (and bigvgan's filters)
        tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        exact = agreement(run_tag(), run_official())
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    ratio = statistics.median(row["ratio"] for row in rows)
    audio_s = mel.shape[-1] * 256 / 16000
    command = "uv run python benchmarks/make_an_audio_vocoder.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    intro = [f"# Make-An-Audio vocoder: TAG vs official ({device_name(device)})", "",
             f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC with `{command}`.",
             f"Same BigVGAN weights (`{args.weights.name}`), same mel ({mel.shape[0]} x 80 x {mel.shape[-1]} frames = "
             f"{audio_s:.2f} s of audio), one process, {args.rounds} rounds alternating which runs first; "
             f"TAG's activation path: `{path}`.",
             f"**Median TAG / official time: {ratio:.3f}** (median seconds: official "
             f"{statistics.median(r['official_s'] for r in rows):.3f}, TAG {statistics.median(r['tag_s'] for r in rows):.3f}).",
             f"Agreement of the waveforms: max abs {agree['max_abs']:.3g}, relative L2 {agree['rel_l2']:.3g}"
             + (f" (with TF32 off on both sides: max abs {exact['max_abs']:.3g}, relative L2 {exact['rel_l2']:.3g})."
                if exact else "."),
             f"Machine load average (1 min) {load_before:.1f} before and {os.getloadavg()[0]:.1f} after (other jobs "
             f"share these cores: compare the ratio, not the seconds)."]
    suffix = (f"_{args.threads}_threads" if args.threads else "") + (f"_batch{args.batch}" if args.batch > 1 else "")
    for written in write_results(args.out / f"make_an_audio_vocoder_{device.type}{suffix}", FIELDS, rows, intro):
        print(f"wrote {written}")


if __name__ == "__main__":
    main()

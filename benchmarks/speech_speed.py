"""Speech backends' speed: seconds of compute per second of speech, sentence batching, peak memory.

Runs the real backend code (tag_speech) on real checkpoints (`--weights`/`--vocoder` folders or hub ids) or, with
`--tiny DIR`, on the tiny random models the tests build (pipeline overhead only: their "speech" is noise and its
length is arbitrary, so only the relative batch-vs-sequential figure carries over to real models).

    uv run python benchmarks/speech_speed.py --backend speecht5 --device cuda           # hub defaults, online
    uv run python benchmarks/speech_speed.py --backend mms_tts --weights ~/models/mms-tts-eng
    uv run python benchmarks/speech_speed.py --backend speecht5 --tiny /tmp/tiny_speech --device cpu
    uv run python benchmarks/speech_speed.py --backend bark --tiny /tmp/tiny_speech --device cpu
    uv run python benchmarks/speech_speed.py --backend bark --random-full /tmp/bark_full --device cuda --duration 6

`--random-full DIR` (bark only) builds suno/bark-small's architecture with random weights: real compute per token,
but a random model never ends a sentence, so every sentence runs to the token cap of `--duration` (+0.5 s).

For each sentence count N: one request whose text has N sentences (synthesised as one batch) against N requests
of one sentence each (sequential). speech_s counts all speech synthesised (needed_seconds: sentences left out of a
clip for length were computed too). Writes speech_speed_<backend>_<device>.md and .csv to `--out` (default
benchmarks/results/).
"""
from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

from tag_bench.script_output import device_name, peak_memory_gib, peak_memory_note, write_results

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
SENTENCE = "The quick brown fox jumps over the lazy dog."
FIELDS = ["backend", "weights", "device", "dtype", "sentences", "mode", "wall_s", "speech_s", "s_per_speech_s",
          "sentences_per_s", "peak_mem_gib"]


def tiny_settings(backend: str, folder: Path) -> dict[str, str]:
    from tag_testkit import tiny_speech

    folder.mkdir(parents=True, exist_ok=True)
    if backend == "bark":
        return {"weights": str(folder / "bark") if (folder / "bark").is_dir() else
                str(tiny_speech.build_bark(folder))}
    if backend == "mms_tts":
        return {"weights": str(folder / "mms_tts") if (folder / "mms_tts").is_dir() else
                str(tiny_speech.build_mms(folder))}
    if not (folder / "speecht5_tts").is_dir():
        tiny_speech.build_speecht5(folder)
    return {"weights": str(folder / "speecht5_tts"), "vocoder": str(folder / "speecht5_hifigan")}


def full_bark_settings(folder: Path) -> dict[str, str]:
    """suno/bark-small's architecture with random weights, built once in `folder`."""
    from tag_testkit import tiny_speech

    existing = folder / "bark_small_random"
    if not existing.is_dir():
        tiny_speech.build_bark(folder, name="bark_small_random", full_size=True)
    return {"weights": str(existing)}


def timed(backend, texts: list[str], duration: float, seed: int) -> tuple[float, float]:
    """(wall seconds, seconds of speech) for generating `texts` one request after another."""
    import torch

    started = time.perf_counter()
    speech = sum(backend.generate(text, duration, seed=seed).metadata["needed_seconds"] for text in texts)
    if backend.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, speech


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("speecht5", "mms_tts", "bark"), default="speecht5")
    parser.add_argument("--weights", default="", help="model folder or hub id (default: the backend's)")
    parser.add_argument("--vocoder", default="", help="SpeechT5 vocoder folder or hub id")
    parser.add_argument("--tiny", type=Path, help="build/use the tests' tiny random models in this folder")
    parser.add_argument("--random-full", type=Path, help="bark: build/use bark-small's architecture with random "
                        "weights in this folder")
    parser.add_argument("--duration", type=float, help="requested duration (default: enough for every sentence)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--sentences", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="output folder")
    args = parser.parse_args()

    from tag_speech.bark import BarkBackend
    from tag_speech.mms import MmsTtsBackend
    from tag_speech.speecht5 import SpeechT5Backend

    if args.random_full and args.backend != "bark":
        parser.error("--random-full is for --backend bark")
    cls = {"speecht5": SpeechT5Backend, "mms_tts": MmsTtsBackend, "bark": BarkBackend}[args.backend]
    if args.tiny:
        settings = tiny_settings(args.backend, args.tiny)
    elif args.random_full:
        settings = full_bark_settings(args.random_full)
    else:
        settings = {k: v for k, v in (("weights", args.weights), ("vocoder", args.vocoder)) if v}
    backend = cls({**settings, "device": args.device, "dtype": args.dtype})
    started = time.perf_counter()
    backend.ensure_loaded()
    load_s = time.perf_counter() - started
    duration = args.duration or min(cls.max_duration, 6.0 * max(args.sentences) + 5)
    timed(backend, [SENTENCE], duration, 0)  # warm-up
    rows = []
    for count in args.sentences:
        for mode, texts in (("batched", [" ".join([SENTENCE] * count)]), ("sequential", [SENTENCE] * count)):
            wall = speech = 0.0
            for repeat in range(args.repeats):
                w, s = timed(backend, texts, duration, repeat)
                wall, speech = wall + w, speech + s
            rows.append({
                "backend": args.backend, "weights": weights_label(args, backend),
                "device": device_name(backend.device), "dtype": str(backend.dtype).removeprefix("torch."),
                "sentences": count, "mode": mode, "wall_s": round(wall / args.repeats, 4),
                "speech_s": round(speech / args.repeats, 3),
                "s_per_speech_s": round(wall / speech, 4) if speech else None,
                "sentences_per_s": round(count * args.repeats / wall, 2),
                "peak_mem_gib": round(peak_memory_gib(backend.device), 2),
            })
            print(rows[-1], flush=True)
    write(rows, args, load_s, duration, backend.device)


def weights_label(args, backend) -> str:
    if args.tiny:
        return "tiny random"
    return "bark-small architecture, random weights" if args.random_full else backend.model_id


def write(rows: list[dict], args, load_s: float, duration: float, device) -> None:
    slug = re.sub(r"[^a-z0-9]+", "_", rows[0]["device"].lower()).strip("_")
    kind = "tiny_" if args.tiny else "random_full_" if args.random_full else ""
    stem = args.out / f"speech_speed_{args.backend}_{kind}{slug}"
    intro = [f"# Speech speed: {args.backend} on {rows[0]['device']} ({rows[0]['dtype']})", "",
             f"Weights: {rows[0]['weights']}. Model load: {load_s:.1f} s. Each row is the mean of {args.repeats} "
             f"runs; `batched` = one request of N sentences (one model batch), `sequential` = N one-sentence "
             f"requests; requested duration {duration:g} s. s_per_speech_s = compute seconds per second of speech "
             f"synthesised (below 1 = faster than real time). {peak_memory_note(device)}"]
    if args.tiny:
        intro += ["", "Tiny random models (the tests'): pipeline overhead only, not the speed of real checkpoints; "
                  "their speech length is arbitrary."]
    if args.random_full:
        intro += ["", "bark-small's architecture with random weights: the real compute per token, but every sentence "
                  "runs to the token cap set by the duration (a trained model stops at the end of the sentence)."]
    for path in write_results(stem, FIELDS, rows, intro, table_fields=FIELDS[4:]):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

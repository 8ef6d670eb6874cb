"""Write random-weight models at full size, in each backend's real on-disk layout, plus a `tag` config using them.

Speed does not depend on the weight values (every step runs the whole network), so these folders give true
timings for `tag bench` where the real checkpoints are not available. Quality (CLAP) from them is meaningless:
benchmark CLAP only with real weights. The builders are the ones the tests and per-backend speed scripts use:
tests/tag_testkit/make_an_audio_tiny.py (official `useful_ckpts` layout at the FULL size),
tag_audiogen.synthetic (audiocraft's exported pair; AudioGen-medium LM and EnCodec, T5 replaced by a lookup
table) and tests/tag_testkit/tiny_speech.py (tokenizers; the models are then replaced by full-size ones with the
released configs' defaults).

    uv run python benchmarks/random_weights.py /tmp/tag-random                      # everything, full size
    uv run tag --config /tmp/tag-random/tag.toml bench -b make_an_audio -b audiogen -b speecht5 -b mms_tts -b bark ...

`--device cuda` only writes `device = "cuda"` into the config (the files are the same for every device).
"""
from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("make_an_audio", "audiogen", "speecht5", "mms_tts", "bark")


def make_an_audio(folder: Path, size: str) -> dict[str, str]:
    from tag_testkit.make_an_audio_tiny import FULL, TINY, TINY_WORDS, write_folder

    if not (folder / "maa1_full.ckpt").is_file():
        write_folder(folder, FULL if size == "full" else TINY, TINY_WORDS)
    return {"weights": str(folder)}


def audiogen(folder: Path, size: str) -> dict[str, str]:
    from tag_audiogen.synthetic import AUDIOGEN_MEDIUM, ModelShape, export_random_model

    if not (folder / "state_dict.bin").is_file():
        export_random_model(folder, AUDIOGEN_MEDIUM if size == "full" else ModelShape())
    return {"weights": str(folder)}


def speecht5(folder: Path, size: str) -> dict[str, str]:
    """SpeechT5 TTS + HiFi-GAN. The full-size decoder's stop head is silenced so it decodes up to the clip length
    (a random stop head fires at an arbitrary frame; a trained one stops at the end of the sentence)."""
    from tag_testkit.tiny_speech import build_speecht5

    model_dir, vocoder_dir = folder / "speecht5_tts", folder / "speecht5_hifigan"
    if not (model_dir / "config.json").is_file():
        build_speecht5(folder)
        if size == "full":
            import torch
            from transformers import (SpeechT5Config, SpeechT5ForTextToSpeech, SpeechT5HifiGan,
                                      SpeechT5HifiGanConfig, SpeechT5Tokenizer)

            vocab = len(SpeechT5Tokenizer.from_pretrained(model_dir))
            torch.manual_seed(0)
            model = SpeechT5ForTextToSpeech(SpeechT5Config(vocab_size=vocab)).eval()
            with torch.no_grad():
                model.speech_decoder_postnet.prob_out.weight.zero_()
                model.speech_decoder_postnet.prob_out.bias.fill_(-20.0)
            model.save_pretrained(model_dir)
            SpeechT5HifiGan(SpeechT5HifiGanConfig()).eval().save_pretrained(vocoder_dir)
    return {"weights": str(model_dir), "vocoder": str(vocoder_dir)}


def mms_tts(folder: Path, size: str) -> dict[str, str]:
    """VITS in the MMS-TTS layout; full size = VitsConfig defaults (the facebook/mms-tts-* architecture)."""
    from tag_testkit.tiny_speech import build_mms

    model_dir = folder / "mms_tts"
    if not (model_dir / "config.json").is_file():
        build_mms(folder)
        if size == "full":
            import torch
            from transformers import VitsConfig, VitsModel, VitsTokenizer

            vocab = len(VitsTokenizer.from_pretrained(model_dir))
            torch.manual_seed(0)
            VitsModel(VitsConfig(vocab_size=vocab)).eval().save_pretrained(model_dir)
    return {"weights": str(model_dir)}


def bark(folder: Path, size: str) -> dict[str, str]:
    """Bark in the suno/bark-small layout with its voice presets; full size = bark-small's architecture."""
    from tag_testkit.tiny_speech import build_bark

    model_dir = folder / "bark"  # build_bark writes ROOT/bark next to its tokenizer and preset sources
    if not (model_dir / "config.json").is_file():
        build_bark(folder, full_size=size == "full")
    return {"weights": str(model_dir)}


WRITERS: dict[str, Callable[[Path, str], dict[str, str]]] = {
    "make_an_audio": make_an_audio, "audiogen": audiogen, "speecht5": speecht5, "mms_tts": mms_tts, "bark": bark,
}


def config_text(settings: dict[str, dict[str, str]], device: str) -> str:
    lines = ["# Written by benchmarks/random_weights.py: RANDOM weights, for speed benchmarks only."]
    for backend, values in settings.items():
        lines += ["", f"[backends.{backend}]"] + [f'{k} = "{v}"' for k, v in values.items()]
        if device != "auto":
            lines.append(f'device = "{device}"')
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder to write into (outside the repository, e.g. /tmp/tag-random)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated subset of {BACKENDS}")
    parser.add_argument("--tiny", default="", metavar="NAMES",
                        help="comma-separated backends to write at the tests' tiny size instead of full size")
    parser.add_argument("--device", default="auto", help="device written into the config (cpu, cuda, auto)")
    args = parser.parse_args()

    names = [n for n in args.backends.split(",") if n]
    tiny = {n for n in args.tiny.split(",") if n}
    unknown = sorted((set(names) | tiny) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backends {unknown}; choose from {BACKENDS}")
    settings = {}
    for name in names:
        size = "tiny" if name in tiny else "full"
        started = time.perf_counter()
        settings[name] = WRITERS[name](args.out / name, size)
        print(f"{name}: {size} random weights in {args.out / name} ({time.perf_counter() - started:.0f} s)",
              flush=True)
    config = args.out / "tag.toml"
    config.write_text(config_text(settings, args.device))
    print(f"wrote {config}; benchmark with: uv run tag --config {config} bench -b {' -b '.join(names)} ...")


if __name__ == "__main__":
    main()

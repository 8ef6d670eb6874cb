"""A tiny, randomly initialised Chatterbox in the package's own on-disk format (the files `from_local` reads).

chatterbox-tts hard-codes its model sizes: `T3()` takes its Llama backbone from the module-level table
`LLAMA_CONFIGS["Llama_520M"]`, and `S3Gen()` builds its speech tokenizer, conformer encoder, flow-matching decoder
and vocoder with literal arguments. `tiny_sizes()` shrinks them while it is active by replacing that table entry and
the constructor names in `chatterbox.models.s3gen.s3gen` with versions that force small layer counts/widths; the
package's loaders (`ChatterboxTTS.from_local`, `S3Gen()`, `T3()`) then build and load the tiny model unchanged.
Widths that other modules hard-code (T3's 1024-wide perceiver, S3Gen's 512-wide encoder, 80 mel bins) stay.

The audio is noise-like; only the plumbing (loading, conditioning, seeding, sentence assembly) is meaningful.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

TOKENIZER_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'\"-"
SPEECH_STOP_CHOICES = 40
"""The tiny T3 picks the stop token about once in this many steps, so an utterance lasts about a second."""
LANGUAGES = ("en", "de", "fr")
"""Language tokens of the tiny multilingual tokenizer (the real one has 23)."""


def _forcing(factory: Callable[..., Any], **small: Any) -> Callable[..., Any]:
    """`factory` with `small` keyword arguments overriding whatever the caller passes."""
    def build(*args: Any, **kwargs: Any) -> Any:
        return factory(*args, **{**kwargs, **small})
    return build


@contextlib.contextmanager
def tiny_sizes() -> Iterator[None]:
    """While active, chatterbox builds tiny T3 and S3Gen models (see the module docstring)."""
    from chatterbox.models.s3gen import s3gen
    from chatterbox.models.t3 import llama_configs
    from s3tokenizer.model_v2 import ModelConfig, S3TokenizerV2

    # 14 layers of 16 heads: the multilingual model's alignment analyzer watches heads of layers 9, 12 and 13.
    llama = {**llama_configs.LLAMA_CONFIGS["Llama_520M"], "num_hidden_layers": 14, "intermediate_size": 64,
             "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 4}
    patches = {
        "UpsampleConformerEncoder": _forcing(s3gen.UpsampleConformerEncoder, num_blocks=1, linear_units=64,
                                             attention_heads=2),
        "ConditionalDecoder": _forcing(s3gen.ConditionalDecoder, channels=[32], n_blocks=1, num_mid_blocks=1,
                                       num_heads=2, attention_head_dim=16),
        "HiFTGenerator": _forcing(s3gen.HiFTGenerator, base_channels=16, resblock_kernel_sizes=[3],
                                  resblock_dilation_sizes=[[1]], source_resblock_kernel_sizes=[7, 7, 11],
                                  source_resblock_dilation_sizes=[[1], [1], [1]]),
    }
    saved_llama = llama_configs.LLAMA_CONFIGS["Llama_520M"]
    saved = {name: getattr(s3gen, name) for name in patches}
    saved_tokenizer = S3TokenizerV2.__init__.__defaults__
    llama_configs.LLAMA_CONFIGS["Llama_520M"] = llama
    # chatterbox's S3Tokenizer passes no config to S3TokenizerV2, which then uses its default-argument config.
    S3TokenizerV2.__init__.__defaults__ = (ModelConfig(n_audio_state=128, n_audio_head=2, n_audio_layer=1),)
    for name, factory in patches.items():
        setattr(s3gen, name, factory)
    try:
        yield
    finally:
        llama_configs.LLAMA_CONFIGS["Llama_520M"] = saved_llama
        S3TokenizerV2.__init__.__defaults__ = saved_tokenizer
        for name, factory in saved.items():
            setattr(s3gen, name, factory)


def voice_sample(seconds: float, rate: int = 22050, pitch: float = 160.0) -> np.ndarray:
    """A voiced-sounding test signal (a pitched tone with a syllable-rate envelope)."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * pitch * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2).astype(np.float32)


def build_chatterbox(folder: Path, multilingual: bool = False) -> Path:
    """Write the files `from_local` reads into `folder`: for the English model ve.safetensors,
    t3_cfg.safetensors, s3gen.safetensors and tokenizer.json; for the multilingual one ve.pt,
    t3_mtl23ls_v2.safetensors, s3gen.pt and grapheme_mtl_merged_expanded_v1.json; conds.pt for both.

    Must be called (and the result loaded) inside `tiny_sizes()`. The default voice (conds.pt) is made the way
    upstream makes conditionals: `prepare_conditionals` on a sample, then `Conditionals.save`.
    """
    import soundfile as sf
    import torch
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.t3.modules.t3_config import T3Config
    from chatterbox.models.voice_encoder import VoiceEncoder
    from chatterbox.mtl_tts import ChatterboxMultilingualTTS
    from chatterbox.tts import ChatterboxTTS
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    t3 = T3(T3Config.multilingual() if multilingual else T3Config.english_only())
    _make_t3_stop(t3)
    t3_state = {k: v.contiguous() for k, v in t3.state_dict().items()}
    if multilingual:
        torch.save(VoiceEncoder().state_dict(), folder / "ve.pt")
        save_file(t3_state, folder / "t3_mtl23ls_v2.safetensors")
        torch.save(S3Gen().state_dict(), folder / "s3gen.pt")
        _write_tokenizer(folder / "grapheme_mtl_merged_expanded_v1.json", t3.hp.start_text_token,
                         t3.hp.stop_text_token, [f"[{code}]" for code in LANGUAGES])
    else:
        save_file(VoiceEncoder().state_dict(), folder / "ve.safetensors")
        save_file(t3_state, folder / "t3_cfg.safetensors")
        save_file({k: v.contiguous() for k, v in S3Gen().state_dict().items()}, folder / "s3gen.safetensors")
        _write_tokenizer(folder / "tokenizer.json", t3.hp.start_text_token, t3.hp.stop_text_token)
    model = (ChatterboxMultilingualTTS if multilingual else ChatterboxTTS).from_local(folder, "cpu")
    sample = folder.parent / f"{folder.name}_default_voice.wav"
    sf.write(sample, voice_sample(6.0, pitch=120.0), 22050, subtype="FLOAT")
    model.prepare_conditionals(str(sample), exaggeration=0.5)
    model.conds.save(folder / "conds.pt")
    sample.unlink()
    return folder


def _make_t3_stop(t3: Any) -> None:
    """A random T3 almost never samples its stop token; make it stop after about SPEECH_STOP_CHOICES steps.

    Every speech token embeds to the same all-ones vector, so the last hidden state points roughly along it; the
    head then gives the stop token and SPEECH_STOP_CHOICES ordinary tokens the same large logit along that
    direction (all others none), so each step picks among those uniformly.
    """
    import torch

    with torch.no_grad():
        t3.speech_emb.weight.fill_(1.0)
        head = t3.speech_head.weight
        head.zero_()
        strong = 12.0 / head.shape[1]
        head[:SPEECH_STOP_CHOICES] = strong
        head[t3.hp.stop_speech_token] = strong


def _write_tokenizer(path: Path, start_id: int, stop_id: int, extra: list[str] | None = None) -> None:
    """A character-level tokenizers JSON with Chatterbox's special tokens ([START], [STOP], [UNK], [SPACE]) and
    `extra` ones (the multilingual model's language tokens such as [de])."""
    vocab = {"[STOP]": stop_id, "[UNK]": 1, "[SPACE]": 2}
    vocab.update({ch: 3 + i for i, ch in enumerate(TOKENIZER_CHARS)})
    vocab.update({token: 3 + len(TOKENIZER_CHARS) + i for i, token in enumerate(extra or [])})
    vocab["[START]"] = start_id
    specials = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                 "normalized": False, "special": True} for t, i in vocab.items() if t.startswith("[")]
    path.write_text(json.dumps({
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": specials, "normalizer": None,
        "pre_tokenizer": None, "post_processor": None, "decoder": None,
        "model": {"type": "BPE", "dropout": None, "unk_token": "[UNK]", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                  "merges": []},
    }))


def main() -> None:
    """`python -m tag_testkit.tiny_chatterbox ARGS...`: the `tag` command with tiny_sizes() active, so that
    `generate -b chatterbox -O weights=FOLDER` and `bench -b chatterbox` load a folder written by build_chatterbox
    (`... build FOLDER` writes one)."""
    import sys

    from tagcore.cli import main as tag

    with tiny_sizes():
        if sys.argv[1:2] == ["build"]:  # build FOLDER [multilingual]
            print(build_chatterbox(Path(sys.argv[2]), multilingual=sys.argv[3:4] == ["multilingual"]))
            return
        tag()


if __name__ == "__main__":
    main()

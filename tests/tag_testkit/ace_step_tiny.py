"""A random-weight ACE-Step 1.5 pipeline written in the exact hub layout (`AceStepPipeline.save_pretrained`:
model_index.json plus one folder per component), every component tiny, for the tests.

`python -m tag_testkit.ace_step_tiny DIR [--base]` writes one. The classes are the real ones (AutoencoderOobleck,
a Qwen3 text encoder with a Qwen2 tokenizer as the released checkpoint has, AceStepConditionEncoder,
AceStepTransformer1DModel, the flow-matching Euler scheduler configured as the pipeline expects, and the optional
audio tokenizer/detokenizer that the cover task needs), so `from_pretrained` reads exactly the files it reads from
the hub. The VAE keeps the released 48 kHz rate and 1920-sample hop (25 latent frames a second), so durations,
frame counts and the 10 s minimum mean what they mean on the real model. Nothing is downloaded: the tokenizer is
byte-level (one token per UTF-8 byte) and built here.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TypedDict

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
ACOUSTIC = 8
"""Latent channels of the tiny VAE (the released model has 64)."""


class Width(TypedDict):
    """The transformer width every tiny component shares (typed, so the configs it is passed to check it)."""

    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int


WIDTH = Width(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_key_value_heads=1, head_dim=16)


def _tokenizer() -> Any:
    """A byte-level BPE tokenizer without merges, wrapped in the released checkpoint's Qwen2 tokenizer class."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import Qwen2Tokenizer

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: index for index, token in enumerate(sorted(alphabet))}
    vocab.update({token: len(vocab) + i for i, token in enumerate(SPECIALS)})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return Qwen2Tokenizer(tokenizer_object=tok, pad_token="<|endoftext|>", eos_token="<|endoftext|>",
                          unk_token=None,  # type: ignore[arg-type]  # as released; None works, the hint says str
                          bos_token=None, additional_special_tokens=list(SPECIALS[1:]),
                          model_max_length=4096, padding_side="right")


def _perturb(*modules: Any) -> None:
    """Noise on every parameter: some output layers start at zero, which would make a random model ignore its
    input (every seed the same song) and the tests' equalities vacuous."""
    import torch

    with torch.no_grad():
        for module in modules:
            for parameter in module.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.05)


def _text_encoder(vocab: int) -> Any:
    from transformers import Qwen3Config, Qwen3Model

    config = Qwen3Config(vocab_size=vocab, num_hidden_layers=2, max_position_embeddings=8192, **WIDTH)
    return Qwen3Model(config).eval()


def _audio_codec() -> tuple[Any, Any]:
    """The 5 Hz audio tokenizer and its detokenizer (the cover task's semantic codes)."""
    from diffusers.pipelines.ace_step.modeling_ace_step import AceStepAudioTokenDetokenizer, AceStepAudioTokenizer

    shared = dict(audio_acoustic_hidden_dim=ACOUSTIC, pool_window_size=5, num_attention_pooler_hidden_layers=1,
                  **WIDTH)
    tokenizer = AceStepAudioTokenizer(fsq_dim=WIDTH["hidden_size"], fsq_input_levels=[8, 5, 5], **shared)
    return tokenizer, AceStepAudioTokenDetokenizer(**shared)


def write(folder: Path, *, seed: int = 0, turbo: bool = True) -> Path:
    """An AceStepPipeline folder: `turbo` (guidance distilled, the released default) or a base model (CFG)."""
    import torch
    # From the defining modules: type checkers resolve diffusers' lazy exports to its dummy placeholder classes.
    from diffusers.models.autoencoders.autoencoder_oobleck import AutoencoderOobleck
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step.modeling_ace_step import AceStepConditionEncoder
    from diffusers.pipelines.ace_step.pipeline_ace_step import AceStepPipeline
    from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler

    torch.manual_seed(seed)
    tokenizer = _tokenizer()
    text_encoder = _text_encoder(len(tokenizer))
    vae = AutoencoderOobleck(encoder_hidden_size=2 * ACOUSTIC, downsampling_ratios=[2, 4, 4, 6, 10],
                             channel_multiples=[1, 1, 1, 1, 1],
                             decoder_channels=4, decoder_input_channels=ACOUSTIC, audio_channels=2,
                             sampling_rate=48000)
    condition = AceStepConditionEncoder(text_hidden_dim=WIDTH["hidden_size"], timbre_hidden_dim=ACOUSTIC,
                                        num_lyric_encoder_hidden_layers=1, num_timbre_encoder_hidden_layers=1,
                                        sliding_window=16, **WIDTH)
    transformer = AceStepTransformer1DModel(num_hidden_layers=2, in_channels=3 * ACOUSTIC,
                                            audio_acoustic_hidden_dim=ACOUSTIC, sliding_window=16, is_turbo=turbo,
                                            model_version="turbo" if turbo else "base", **WIDTH)
    audio_tokenizer, detokenizer = _audio_codec()
    _perturb(vae, condition, transformer, audio_tokenizer, detokenizer)
    with torch.no_grad():  # the encoded silence the converter stores; zeros would be out of distribution
        condition.silence_latent.copy_(torch.randn_like(condition.silence_latent) * 0.5)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0)
    pipe = AceStepPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer,
                           condition_encoder=condition, scheduler=scheduler, audio_tokenizer=audio_tokenizer,
                           audio_token_detokenizer=detokenizer)
    pipe.save_pretrained(str(folder))
    return Path(folder)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a tiny random ACE-Step 1.5 pipeline in the hub layout.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--base", action="store_true", help="a base (CFG) model instead of turbo")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(write(args.folder, seed=args.seed, turbo=not args.base))


if __name__ == "__main__":
    main()

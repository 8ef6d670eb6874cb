"""Random-weight audiocraft models written in audiocraft's exported on-disk format.

Why this exists: no pretrained weights can be fetched in CI or on a benchmark machine without network access, yet
the loader, the sampler and the windowed extension must run on exactly the files a real user downloads. These
helpers write `state_dict.bin` + `compression_state_dict.bin` (`{'xp.cfg': YAML, 'best_state': ..., 'exported':
True}`) from configs that mirror the released AudioGen/MusicGen ones, at any size: tiny for tests, the real
AudioGen-medium architecture for GPU benchmarks. `write_t5_cache` adds the text encoder the real checkpoints name
(a tiny T5 laid out as a Hugging Face hub cache entry), so the T5 conditioner path runs offline too.
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelShape:
    """The numbers that make a model big or small; everything else follows the released configs."""

    sample_rate: int = 16000
    ratios: tuple[int, ...] = (8, 5, 4, 2)
    """EnCodec hop = product of ratios; 16 kHz / 320 = 50 Hz like AudioGen, 32 kHz / 640 like MusicGen."""
    seanet_filters: int = 4
    seanet_dimension: int = 16
    n_q: int = 4
    card: int = 256
    dim: int = 32
    num_heads: int = 2
    num_layers: int = 2
    segment_duration: float = 10.0
    text_conditioner: str = "lut"
    """`lut` (lookup table, needs nothing else) or a T5 name such as `t5-large` (needs that T5 in the HF cache:
    `write_t5_cache` writes a tiny one)."""
    extra: dict[str, Any] = field(default_factory=dict)


AUDIOGEN_MEDIUM = ModelShape(seanet_filters=64, seanet_dimension=128, card=2048, dim=1536, num_heads=24,
                             num_layers=48, text_conditioner="lut")
"""The released AudioGen-medium LM and EnCodec sizes (the T5-large text encoder replaced by a lookup table)."""


def compression_config(shape: ModelShape, device: str = "cpu") -> dict[str, Any]:
    """EnCodec (SEANet + residual VQ) config in the layout audiocraft's `get_compression_model` reads."""
    return {
        "compression_model": "encodec",
        "device": device,
        "dtype": "float32",
        "sample_rate": shape.sample_rate,
        "channels": 1,
        "encodec": {"autoencoder": "seanet", "quantizer": "rvq", "sample_rate": shape.sample_rate,
                    "channels": 1, "causal": False, "renormalize": False},
        "seanet": {"dimension": shape.seanet_dimension, "channels": 1, "causal": False,
                   "n_filters": shape.seanet_filters, "n_residual_layers": 1, "ratios": list(shape.ratios),
                   "activation": "ELU", "activation_params": {"alpha": 1.0}, "norm": "weight_norm",
                   "norm_params": {}, "kernel_size": 7, "residual_kernel_size": 3, "last_kernel_size": 7,
                   "dilation_base": 2, "pad_mode": "constant", "true_skip": True, "compress": 2, "lstm": 2,
                   "disable_norm_outer_blocks": 0, "encoder": {}, "decoder": {"trim_right_ratio": 1.0}},
        "rvq": {"n_q": shape.n_q, "q_dropout": False, "bins": shape.card, "decay": 0.99, "kmeans_init": False,
                "kmeans_iters": 50, "threshold_ema_dead_code": 2},
    }


def lm_config(shape: ModelShape, device: str = "cpu") -> dict[str, Any]:
    """Transformer LM config (delay pattern, cross-attention text conditioning, CFG) like the released models."""
    if shape.text_conditioner == "lut":
        description = {"model": "lut", "lut": {"n_bins": 64, "dim": 16, "tokenizer": "noop"}}
    else:
        description = {"model": "t5", "t5": {"name": shape.text_conditioner, "finetune": False,
                                             "word_dropout": 0.0, "normalize_text": False}}
    cfg = {
        "lm_model": "transformer_lm",
        "device": device,
        "dtype": "float32",
        "dataset": {"segment_duration": shape.segment_duration, "sample_rate": shape.sample_rate},
        "transformer_lm": {
            "n_q": shape.n_q, "card": shape.card, "dim": shape.dim, "num_heads": shape.num_heads,
            "num_layers": shape.num_layers, "hidden_scale": 4, "norm": "layer_norm", "norm_first": True,
            "bias_proj": False, "bias_ff": False, "bias_attn": False, "activation": "gelu", "causal": True,
            "custom": False, "memory_efficient": False, "attention_as_float32": False, "layer_scale": None,
            "positional_embedding": "sin", "xpos": False, "checkpointing": "none", "weight_init": "gaussian",
            "depthwise_init": "current", "zero_bias_init": True, "emb_lr": None, "dropout": 0.0,
        },
        "codebooks_pattern": {"modeling": "delay",
                              "delay": {"delays": list(range(shape.n_q)), "flatten_first": 0, "empty_initial": 0}},
        "conditioners": {"description": description},
        "fuser": {"cross_attention_pos_emb": False, "cross_attention_pos_emb_scale": 1, "sum": [], "prepend": [],
                  "cross": ["description"], "input_interpolate": []},
        "classifier_free_guidance": {"training_dropout": 0.1, "inference_coef": 3.0},
        "attribute_dropout": {},
    }
    cfg.update(copy.deepcopy(shape.extra))
    return cfg


def export_random_model(folder: str | Path, shape: ModelShape, *, seed: int = 0) -> Path:
    """Build both models with random weights and save them as audiocraft's exported checkpoint pair."""
    import torch
    from audiocraft.models import builders
    from omegaconf import OmegaConf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    for filename, cfg, build in (
        ("compression_state_dict.bin", compression_config(shape), builders.get_compression_model),
        ("state_dict.bin", lm_config(shape), builders.get_lm_model),
    ):
        model = build(OmegaConf.create(cfg))
        package = {"xp.cfg": OmegaConf.to_yaml(OmegaConf.create(cfg)), "best_state": model.state_dict(),
                   "version": "1.3.0", "exported": True}
        torch.save(package, folder / filename)
        del model
    return folder


def write_t5_cache(hub_cache: str | Path, name: str = "t5-small", *, seed: int = 0) -> Path:
    """Lay out a tiny random T5 encoder + tokenizer as the hub cache entry audiocraft's T5 conditioner asks for.

    audiocraft loads its text encoder by a fixed name (`T5Tokenizer/T5EncoderModel.from_pretrained("t5-large")`)
    and sizes its projection from a fixed table, so a stand-in must carry that name and that `d_model`; everything
    else (one layer, a 41-piece Unigram vocabulary, d_ff 32) is as small as T5 allows. The layout is the one
    `huggingface_hub` writes (`models--<name>/snapshots/<revision>/` + `refs/main`), so with `HF_HUB_CACHE`
    pointing at `hub_cache` and `HF_HUB_OFFLINE=1` transformers finds it exactly as it finds a real download.
    Returns the snapshot folder.
    """
    import torch
    from audiocraft.modules.conditioners import T5Conditioner
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    if name not in T5Conditioner.MODELS or name not in T5Conditioner.MODELS_DIMS:
        raise ValueError(f"audiocraft's T5 conditioner accepts only {T5Conditioner.MODELS}")
    pieces = ["<pad>", "</s>", "<unk>", "\u2581", *"abcdefghijklmnopqrstuvwxyz",
              *("\u2581" + word for word in "a the dog rain on tin roof car horn birds wind".split())]
    vocab = [(piece, 0.0 if index < 3 else -1.0 - index / 100) for index, piece in enumerate(pieces)]
    revision = hashlib.sha1(f"tiny-{name}-{seed}".encode()).hexdigest()
    entry = Path(hub_cache) / f"models--{name.replace('/', '--')}"
    snapshot = entry / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    (entry / "refs").mkdir(exist_ok=True)
    (entry / "refs" / "main").write_text(revision)
    T5Tokenizer(vocab=vocab, extra_ids=0).save_pretrained(snapshot)
    torch.manual_seed(seed)
    config = T5Config(vocab_size=len(pieces), d_model=T5Conditioner.MODELS_DIMS[name], d_kv=8, d_ff=32,
                      num_layers=1, num_heads=2, relative_attention_num_buckets=8)
    T5EncoderModel(config).save_pretrained(snapshot)
    return snapshot

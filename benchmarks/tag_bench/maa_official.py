"""Importing the official Make-An-Audio v1 code (2023) next to TAG, for side-by-side timing and agreement only.

The official code is never part of this project: point `--official` at a checkout of Text-to-Audio/Make-An-Audio
(0d84177). It was written for torch 1.x and pytorch-lightning 1.x; the shims below only supply names that moved
(torch._six, pytorch_lightning.utilities.distributed, importlib_resources) and make its `from_pretrained
("bert-base-uncased")` read the weights folder's vocab.txt with an untrained BERT (the checkpoint overwrites it).
None of them changes a computation. Its LDM needs pytorch-lightning (`uv run --with pytorch-lightning ...`);
its vocoder needs only omegaconf.
"""
from __future__ import annotations

import importlib.resources
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np


def _shim(repo: Path, weights: Path) -> None:
    import transformers
    from transformers.models.bert.tokenization_bert import BertTokenizerFast

    # setattr throughout: these are modules and methods replaced at run time, which is the shims' whole job
    six = types.ModuleType("torch._six")
    setattr(six, "string_classes", (str, bytes))
    sys.modules.setdefault("torch._six", six)
    try:
        from pytorch_lightning.utilities.rank_zero import rank_zero_only
    except ImportError:  # only the vocoder is used then
        def rank_zero_only(fn: Any) -> Any:
            return fn
    dist = types.ModuleType("pytorch_lightning.utilities.distributed")
    setattr(dist, "rank_zero_only", rank_zero_only)
    sys.modules.setdefault("pytorch_lightning.utilities.distributed", dist)
    sys.modules.setdefault("importlib_resources", importlib.resources)
    vocab_dir = str(weights / "bert-base-uncased")
    auto_tokenizer, auto_model = transformers.AutoTokenizer.from_pretrained, transformers.AutoModel.from_pretrained

    def tokenizer(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "bert-base-uncased":
            return BertTokenizerFast.from_pretrained(vocab_dir, do_lower_case=True)
        return auto_tokenizer(name, *args, **kwargs)

    def model(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "bert-base-uncased":
            return transformers.BertModel(transformers.BertConfig())
        return auto_model(name, *args, **kwargs)

    setattr(transformers.AutoTokenizer, "from_pretrained", tokenizer)
    setattr(transformers.AutoModel, "from_pretrained", model)
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))


def official_vocoder(repo: Path, weights: Path, device: str) -> Any:
    """The official `VocoderBigVGAN` (weight norm kept, as the official script runs it)."""
    _shim(repo, weights)
    from vocoder.bigvgan.models import VocoderBigVGAN

    return VocoderBigVGAN(str(weights / "bigvgan"), device=device)


class OfficialPipeline:
    """The official gen_wav path: DDIM sampler + VocoderBigVGAN, loaded from `weights`."""

    def __init__(self, repo: Path, weights: Path, device: Any) -> None:
        import torch

        _shim(repo, weights)
        from ldm.models.diffusion.ddim import DDIMSampler
        from ldm.util import instantiate_from_config
        from omegaconf import OmegaConf

        import gen_wav

        self.device = torch.device(device)
        gen_wav.device = self.device.type
        self.gen_wav = gen_wav.gen_wav
        started = time.perf_counter()
        config = OmegaConf.load(repo / "configs" / "text_to_audio" / "txt2audio_args.yaml")
        model = instantiate_from_config(config.model)
        state = torch.load(weights / "maa1_full.ckpt", map_location="cpu", weights_only=True)["state_dict"]
        model.load_state_dict(state, strict=False)
        del state
        model = model.to(self.device).eval()
        model.cond_stage_model.to(self.device)
        model.cond_stage_model.device = self.device
        self.sampler = DDIMSampler(model)
        self.vocoder = official_vocoder(repo, weights, self.device.type)
        self.load_s = time.perf_counter() - started

    def generate(self, prompt: str, *, seconds: int, steps: int, guidance: float, batch: int,
                 seed: int) -> list[np.ndarray]:
        """Waveforms (untrimmed) for `batch` samples; seeds the global generator first, as TAG's rule says."""
        import torch

        torch.manual_seed(seed)
        with torch.no_grad():
            wavs = self.gen_wav(self.sampler, self.vocoder, prompt=prompt, ddim_steps=steps, scale=guidance,
                                duration=seconds, n_samples=batch)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return [np.asarray(w, dtype=np.float32).reshape(-1) for w in wavs]


def agreement(ours: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Max abs difference and relative L2 over the common length."""
    n = min(ours.size, reference.size)
    diff = ours.reshape(-1)[:n].astype(np.float64) - reference.reshape(-1)[:n]
    norm = float(np.linalg.norm(reference.reshape(-1)[:n]))
    return {"max_abs": float(np.abs(diff).max()), "rel_l2": float(np.linalg.norm(diff) / max(norm, 1e-12))}

"""A cheap check of a weights folder, for `tag models check/pull make_an_audio` (loads no module).

Checkpoints are opened memory mapped with `weights_only=True`, so listing their keys costs only the pickle
header, not the 1.8 GB of tensors.
"""
from __future__ import annotations

from pathlib import Path

from tagcore.errors import WeightsMissing

from . import checkpoint as ckpt

LDM_PREFIXES = {
    "model.diffusion_model.": "UNet",
    "first_stage_model.decoder.": "VAE decoder",
    "cond_stage_model.caption_encoder.base.": "BERT text encoder",
}
VOCAB_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")


def problems(folder: Path) -> list[str]:
    """Human-readable problems with `folder` (empty when it looks complete and official)."""
    layout = ckpt.Layout(folder)
    found = [f"{layout.path(name)} is missing: {ckpt.HOW_TO_GET[name].replace('WEIGHTS', str(folder))}"
             for name in layout.missing()]
    checks = ((ckpt.LDM_FILE, _check_ldm), (ckpt.VOCODER_FILE, _check_vocoder),
              (ckpt.VOCODER_ARGS, _check_args), (ckpt.VOCAB_FILE, _check_vocab))
    for name, check in checks:
        path = layout.path(name)
        if path.is_file():
            try:
                found.extend(check(path))
            except WeightsMissing as exc:
                found.append(exc.message)
    return found


def _check_ldm(path: Path) -> list[str]:
    sd = ckpt.load_state_dict(path, "state_dict", ckpt.LDM_FILE)
    out = [f"{path} has no {part} weights ({prefix}*)" for prefix, part in LDM_PREFIXES.items()
           if not any(k.startswith(prefix) for k in sd)]
    needed = ckpt.SCHEDULE_KEYS + tuple("cond_stage_model.caption_encoder." + k for k in ckpt.TEXT_PROJECTION_KEYS)
    out += [f"{path} lacks {k}" for k in needed if k not in sd]
    return out


def _check_vocoder(path: Path) -> list[str]:
    sd = ckpt.load_state_dict(path, "generator", ckpt.VOCODER_FILE)
    return [] if "conv_pre.weight_v" in sd or "conv_pre.weight" in sd else [f"{path} is not a BigVGAN generator"]


def _check_args(path: Path) -> list[str]:
    import yaml

    try:
        args = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        return [f"{path} is not valid YAML: {exc}"]
    if not isinstance(args, dict) or "num_mels" not in args or "upsample_rates" not in args:
        return [f"{path} is not a BigVGAN args.yml (needs num_mels, upsample_rates, ...)"]
    return []


def _check_vocab(path: Path) -> list[str]:
    try:
        tokens = set(path.read_text(encoding="utf-8").split("\n"))
    except UnicodeDecodeError:
        return [f"{path} is not UTF-8 text"]
    lacking = [t for t in VOCAB_TOKENS if t not in tokens]
    return [f"{path} lacks the special tokens {', '.join(lacking)}"] if lacking else []

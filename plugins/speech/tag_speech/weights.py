"""Where a speech model's files come from: a local folder in the Hugging Face layout, or a hub id.

Every component (TTS model, vocoder, speaker encoder) is one `tagcore.weights.WeightsSource`. A local folder is
checked file by file before loading so a missing file is named exactly; a hub id is loaded through the hub cache
(downloaded when online) and any failure becomes a WeightsMissing that says which command fetches it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tagcore.errors import WeightsMissing
from tagcore.weights import FOLDER_ITSELF, Required, WeightsSource

T = TypeVar("T")
MODEL_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                 "pytorch_model.bin.index.json")
"""Any one of these holds the weights of a save_pretrained folder."""


def locate(role: str, given: str, default_hub_id: str, required: tuple[Required, ...]) -> WeightsSource:
    """A folder or a hub id (tagcore's rule), whose messages say the `hf download` command that fetches it."""
    source = WeightsSource.locate(role, given, default_hub_id, required)
    fetch = f"hf download {default_hub_id} --local-dir {source.where}" if source.local else fetch_hint(source.where)
    return dataclasses.replace(source, fetch=fetch)


def fetch_hint(repo: str) -> str:
    """The command that downloads a hub repository (`huggingface-cli download` with older huggingface_hub)."""
    return f"hf download {repo}"


def load(source: WeightsSource, loader: Callable[[str], T], default_hub_id: str) -> T:
    """Run `loader(folder)`, turning every way the files can be absent into WeightsMissing; a hub id is fetched
    into the hub cache first (speech models are small enough to download on first use)."""
    folder = source.where if source.local else _snapshot(source)
    missing = source.at(folder).missing()
    if missing == [FOLDER_ITSELF]:
        raise WeightsMissing(
            f"{source.role} folder {folder} does not exist: point the option at a folder saved with "
            f"save_pretrained, or download one with `hf download {default_hub_id} --local-dir {folder}`")
    if missing:
        raise WeightsMissing(f"{source.role} folder {folder} lacks {', '.join(missing)}: download the complete "
                             f"folder with `hf download {default_hub_id} --local-dir {folder}`")
    try:
        return loader(folder)
    except _unreadable_errors() as exc:
        raise WeightsMissing(f"{source.role} in {folder} could not be read ({exc}); re-download it "
                             f"with `hf download {default_hub_id} --local-dir {folder}`") from exc


def _snapshot(source: WeightsSource) -> str:
    """The hub cache folder of this repository, downloading it when online (safetensors preferred)."""
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(source.where, allow_patterns=_HUB_FILES)
        if not any((Path(folder) / name).is_file() for name in MODEL_WEIGHTS):
            folder = snapshot_download(source.where, allow_patterns=["*.bin", *_HUB_FILES])
    except Exception as exc:  # offline, unknown repository, network or disk errors alike
        raise WeightsMissing(
            f"{source.role} {source.where} is neither a local folder nor in the hub cache, and could not be "
            f"downloaded ({type(exc).__name__}): run `{fetch_hint(source.where)}` while online, or pass a local "
            "folder") from exc
    return folder


_HUB_FILES = ["*.json", "*.model", "*.txt", "*.safetensors", "*.npy"]
"""What a speech repository needs from the hub: configs, tokenizers, safetensors weights and (Bark) the .npy
prompts of its voice presets."""


def _unreadable_errors() -> tuple[type[BaseException], ...]:
    """Exceptions meaning "these files are absent, truncated or not what they claim to be"."""
    import pickle

    from safetensors import SafetensorError

    return (OSError, ValueError, RuntimeError, pickle.UnpicklingError, SafetensorError)

"""Where a speech model's files come from: a local folder in the Hugging Face layout, or a hub id.

Every component (TTS model, vocoder, speaker encoder) is one `WeightsSource`. A local folder is checked file by
file before loading so a missing file is named exactly; a hub id is loaded through the hub cache (downloaded when
online) and any failure becomes a WeightsMissing that says which command fetches it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tagcore.errors import WeightsMissing
from tagcore.options import weights_location

T = TypeVar("T")
MODEL_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                 "pytorch_model.bin.index.json")
"""Any one of these holds the weights of a save_pretrained folder."""


@dataclass(frozen=True)
class WeightsSource:
    """One component's weights: `where` is a folder path or a hub repository id."""

    role: str
    where: str
    local: bool
    required: tuple[str | tuple[str, ...], ...]
    """File names the folder must hold; a tuple means any one of those names."""

    @classmethod
    def locate(cls, role: str, given: str, default_hub_id: str,
               required: tuple[str | tuple[str, ...], ...]) -> "WeightsSource":
        """A folder or a hub id, by tagcore's rule for `weights` values (`weights_location`)."""
        where, local = weights_location(given, default_hub_id)
        return cls(role, where, local, required)

    def missing(self) -> list[str]:
        """Names of the required files absent from a local folder (empty for hub ids)."""
        if not self.local:
            return []
        folder = Path(self.where)
        if not folder.is_dir():
            return ["(the folder itself)"]
        return [" or ".join(n) if isinstance(n, tuple) else n for n in self.required
                if not any((folder / name).is_file() for name in ((n,) if isinstance(n, str) else n))]

    def cached(self) -> bool:
        """For a hub id: whether its config is in the local hub cache (no network access)."""
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(self.where, "config.json"), str)

    def status(self) -> tuple[bool, str]:
        """(present, one-line detail) without loading anything."""
        if self.local:
            missing = self.missing()
            if missing:
                return False, f"{self.role}: {self.where} lacks {', '.join(missing)}"
            return True, f"{self.role}: folder {self.where}"
        if self.cached():
            return True, f"{self.role}: {self.where} (hub cache)"
        return False, f"{self.role}: {self.where} is not downloaded yet; {self.fetch_hint()}"

    def fetch_hint(self, repo_id: str | None = None) -> str:
        repo = repo_id or self.where
        return f"run `hf download {repo}` (`huggingface-cli download {repo}` with older huggingface_hub)"

    def load(self, loader: Callable[[str], T], default_hub_id: str) -> T:
        """Run `loader(folder)`, turning every way the files can be absent into WeightsMissing."""
        folder = self.where if self.local else self._snapshot()
        missing = WeightsSource(self.role, folder, True, self.required).missing()
        if missing == ["(the folder itself)"]:
            raise WeightsMissing(
                f"{self.role} folder {folder} does not exist: point the option at a folder saved with "
                f"save_pretrained, or download one with `hf download {default_hub_id} --local-dir {folder}`")
        if missing:
            raise WeightsMissing(f"{self.role} folder {folder} lacks {', '.join(missing)}: download the complete "
                                 f"folder with `hf download {default_hub_id} --local-dir {folder}`")
        try:
            return loader(folder)
        except _unreadable_errors() as exc:
            raise WeightsMissing(f"{self.role} in {folder} could not be read ({exc}); re-download it "
                                 f"with `hf download {default_hub_id} --local-dir {folder}`") from exc

    def _snapshot(self) -> str:
        """The hub cache folder of this repository, downloading it when online (safetensors preferred)."""
        from huggingface_hub import snapshot_download

        try:
            folder = snapshot_download(self.where, allow_patterns=_HUB_FILES)
            if not any((Path(folder) / name).is_file() for name in MODEL_WEIGHTS):
                folder = snapshot_download(self.where, allow_patterns=["*.bin", *_HUB_FILES])
        except Exception as exc:  # offline, unknown repository, network or disk errors alike
            raise WeightsMissing(
                f"{self.role} {self.where} is neither a local folder nor in the hub cache, and could not be "
                f"downloaded ({type(exc).__name__}): {self.fetch_hint()} while online, or pass a local folder"
            ) from exc
        return folder


_HUB_FILES = ["*.json", "*.model", "*.txt", "*.safetensors", "*.npy"]
"""What a speech repository needs from the hub: configs, tokenizers, safetensors weights and (Bark) the .npy
prompts of its voice presets."""


def _unreadable_errors() -> tuple[type[BaseException], ...]:
    """Exceptions meaning "these files are absent, truncated or not what they claim to be"."""
    import pickle

    from safetensors import SafetensorError

    return (OSError, ValueError, RuntimeError, pickle.UnpicklingError, SafetensorError)

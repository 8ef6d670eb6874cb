"""The official weights folder (`useful_ckpts/` layout): where each file lives, and reading it safely.

    WEIGHTS/maa1_full.ckpt             {'state_dict': ...}  text encoder + UNet + VAE + schedule (1.36 GB)
    WEIGHTS/bigvgan/args.yml           vocoder hyper-parameters
    WEIGHTS/bigvgan/best_netG.pt       {'generator': ...}   BigVGAN weights (weight-norm keys)
    WEIGHTS/bert-base-uncased/vocab.txt  tokenizer (Hugging Face `bert-base-uncased`)

Checkpoints are pickles. They are read with `torch.load(weights_only=True)` (no arbitrary objects) and memory
mapped, so a 1.36 GB state dict is never copied in RAM. Every failure names the file and how to get it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tagcore.errors import WeightsMissing
from tagcore.torch_files import load_torch_file

LDM_FILE = "maa1_full.ckpt"
VOCODER_DIR = "bigvgan"
VOCODER_ARGS = "bigvgan/args.yml"
VOCODER_FILE = "bigvgan/best_netG.pt"
VOCAB_FILE = "bert-base-uncased/vocab.txt"
ENV_VAR = "TAG_MAKE_AN_AUDIO_WEIGHTS"

DRIVE_HINT = ("download it from the Google Drive folder (useful_ckpts) linked in the README of the official code, "
              "https://github.com/Text-to-Audio/Make-An-Audio")
HOW_TO_GET = {
    LDM_FILE: f"{DRIVE_HINT} and put maa1_full.ckpt at WEIGHTS/{LDM_FILE}",
    VOCODER_ARGS: f"{DRIVE_HINT}; the bigvgan folder holds args.yml and best_netG.pt: put it at WEIGHTS/bigvgan/",
    VOCODER_FILE: f"{DRIVE_HINT}; the bigvgan folder holds args.yml and best_netG.pt: put it at WEIGHTS/bigvgan/",
    VOCAB_FILE: ("run `tag models pull make_an_audio --dest WEIGHTS` (fetches vocab.txt of bert-base-uncased from "
                 "the Hugging Face hub), or copy vocab.txt from https://huggingface.co/bert-base-uncased"),
}
REQUIRED_FILES = (LDM_FILE, VOCODER_ARGS, VOCODER_FILE, VOCAB_FILE)

# Keys every usable LDM checkpoint must hold besides the module weights (checked in full by the loader).
SCHEDULE_KEYS = ("alphas_cumprod", "scale_factor")
TEXT_PROJECTION_KEYS = ("projection.linear1.weight", "projection.linear2.weight",
                        "projection.layer_norm.weight", "projection.layer_norm.bias")


@dataclass(frozen=True)
class Layout:
    """Paths of the four files of a weights folder."""

    root: Path

    def path(self, name: str) -> Path:
        return self.root / name

    def missing(self) -> list[str]:
        """Relative names of required files that are absent (cheap: only stats files)."""
        return [name for name in REQUIRED_FILES if not self.path(name).is_file()]

    def require_all(self) -> None:
        """Name every missing file at once, so a user fixes the folder in one go."""
        if not self.root.is_dir():
            raise WeightsMissing(
                f"Make-An-Audio: the weights folder {self.root} does not exist. Run `tag models pull make_an_audio "
                f"--dest {self.root}`: it fetches the tokenizer and says where to put maa1_full.ckpt and bigvgan/ "
                f"(Google Drive folder linked in the official README).")
        missing = self.missing()
        if missing:
            raise WeightsMissing("Make-An-Audio: " + "; ".join(self._missing_message(name) for name in missing))

    def _missing_message(self, name: str) -> str:
        return f"{self.path(name)} is missing: {HOW_TO_GET[name].replace('WEIGHTS', str(self.root))}"

    def require(self, name: str) -> Path:
        path = self.path(name)
        if not path.is_file():
            raise WeightsMissing(f"Make-An-Audio: {self._missing_message(name)}")
        return path


def weights_folder(settings: Mapping[str, Any], environ: Mapping[str, str]) -> Path | None:
    """The folder from the `weights` option (config/CLI, already merged by tagcore), else the env variable."""
    folder = settings.get("weights") or environ.get(ENV_VAR) or ""
    return Path(folder).expanduser() if folder else None


def no_folder_error() -> WeightsMissing:
    return WeightsMissing(
        "Make-An-Audio needs its weights folder: pass -O weights=DIR, set TAG_MAKE_AN_AUDIO_WEIGHTS, or add "
        "`weights = \"DIR\"` under [backends.make_an_audio] in the config. DIR holds maa1_full.ckpt, bigvgan/ "
        "(args.yml, best_netG.pt) and bert-base-uncased/vocab.txt; `tag models pull make_an_audio --dest DIR` "
        "fetches what can be fetched and says where to get the rest.")


def load_state_dict(path: Path, entry: str, name: str) -> dict[str, Any]:
    """The `entry` state dict of a checkpoint, read without executing pickled code (tagcore.torch_files)."""
    how = HOW_TO_GET[name]
    blob = load_torch_file(path, what="Make-An-Audio: checkpoint", how_to_get=f"Re-download it: {how}")
    if not isinstance(blob, dict) or not isinstance(blob.get(entry), dict):
        raise WeightsMissing(f"Make-An-Audio: {path} has no '{entry}' state dict; it is not the official file. "
                             f"Get it: {how}")
    return blob[entry]


def require_keys(state: Mapping[str, Any], wanted: Iterable[str], path: Path, name: str, part: str) -> None:
    """Fail loudly (unlike the official strict=False loader) when weights of a module are absent."""
    missing = [k for k in wanted if k not in state]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise WeightsMissing(f"Make-An-Audio: {path} lacks {len(missing)} {part} weight(s) ({shown}); it is "
                             f"incomplete or not the official file. Get it: {HOW_TO_GET[name]}")

"""WeightsSource: where one model's (or one model component's) weights are, and what is missing from them.

Every backend plugin answers the same questions before it loads anything: is the `weights` value a local folder or
a Hugging Face hub id, which of the files it needs are absent, and what sentence tells the user how to get them.
One type answers them for every plugin, so that `tag backends` and a worker's refusal read alike.

The diffusers plugins also share what their weights are: a pipeline folder in the hub layout, whose complete set of
files `missing_pipeline_files` reads from its model_index.json, and the checkpoints a backend publishes under
variant names (`PublishedCheckpoints`), which say the `tag models pull` command of each.

Nothing here imports torch, diffusers or the hub client at import time (a torch-free frontend install imports
tagcore); the hub cache is only consulted when a method asks for it, and never over the network.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backend import WeightsStatus
from .errors import InvalidRequest, WeightsMissing
from .options import weights_location

Required = str | tuple[str, ...]
"""A file a weights folder must hold, relative to it; a tuple means any one of those names."""

FOLDER_ITSELF = "(the folder itself)"
"""What `missing` names when the folder does not exist at all."""

PIPELINE_INDEX = "model_index.json"
"""The root file of a diffusers pipeline folder: it lists the components, one subfolder each."""
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")
"""A component's weights file is `model` (transformers) or `diffusion_pytorch_model` (diffusers) with one of these,
whole or sharded."""
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model", "spiece.model")
"""Any one of these holds a tokenizer's vocabulary (fast, BPE, SentencePiece, T5's SentencePiece)."""


@dataclass(frozen=True)
class WeightsSource:
    """One component's weights: `where` is a folder path (`local`) or a hub repository id.

    `required` lists the files a complete folder holds (empty: the plugin checks its own layout); `fetch` is the
    command that gets them (`tag models pull ...`, `hf download ...`), quoted in every message about missing files.
    """

    role: str
    where: str
    local: bool
    required: tuple[Required, ...] = ()
    fetch: str = ""

    @classmethod
    def locate(cls, role: str, given: str, default_hub_id: str, required: tuple[Required, ...] = (),
               fetch: str = "") -> WeightsSource:
        """A folder or a hub id (empty `given`: the default hub id), by tagcore's rule (`weights_location`):
        something that looks like a path but does not exist is a missing folder, never a download."""
        where, local = weights_location(given, default_hub_id)
        return cls(role, where, local, required, fetch)

    def at(self, folder: Path | str) -> WeightsSource:
        """The same component read from `folder` (e.g. the hub cache's snapshot of this hub id)."""
        return WeightsSource(self.role, str(folder), True, self.required, self.fetch)

    @property
    def hub_id(self) -> str | None:
        return None if self.local else self.where

    @property
    def model_id(self) -> str:
        """The folder's name or the hub id: reported with every result."""
        return Path(self.where).name if self.local else self.where

    def folder(self) -> Path | None:
        """The folder to read: the local path, or the hub cache's snapshot of the hub id (None when not cached)."""
        if self.local:
            return Path(self.where)
        return cached_snapshot(self.where)

    def missing(self, folder: Path | None = None) -> list[str]:
        """The required files absent from `folder` (default: `self.folder()`), each named as the user would look
        for it; `FOLDER_ITSELF` when there is no folder at all."""
        folder = folder if folder is not None else self.folder()
        if folder is None or not folder.is_dir():
            return [FOLDER_ITSELF]
        return [" or ".join(n) if isinstance(n, tuple) else n for n in self.required
                if not any((folder / name).is_file() for name in ((n,) if isinstance(n, str) else n))]

    def missing_message(self, missing: list[str]) -> str:
        """A sentence naming what is absent and the command that gets it."""
        how = f"; get it with `{self.fetch}`" if self.fetch else ""
        if not self.local and missing == [FOLDER_ITSELF]:
            return f"{self.role} {self.where} is not in the Hugging Face hub cache{how}"
        if missing == [FOLDER_ITSELF]:
            return f"{self.role} folder {self.where} does not exist{how}"
        return f"{self.role} folder {self.folder() or self.where} lacks {', '.join(missing)}{how}"

    def status(self) -> tuple[bool, str]:
        """(present, one-line detail) without loading anything."""
        missing = self.missing()
        if missing:
            return False, self.missing_message(missing)
        return True, f"{self.role}: folder {self.where}" if self.local else f"{self.role}: {self.where} (hub cache)"

    def check(self) -> Path:
        """The complete folder to load, or WeightsMissing naming the missing file and how to get it."""
        folder = self.folder()
        missing = self.missing(folder)
        if folder is None or missing:
            raise WeightsMissing(self.missing_message(missing or [FOLDER_ITSELF]))
        return folder


def cached_snapshot(repo_id: str) -> Path | None:
    """The hub cache's snapshot folder of `repo_id`, or None; never touches the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None


def read_config(path: Path) -> dict[str, Any]:
    """A JSON object from a weights folder (a model index, a component's config): a file that is absent, unreadable
    or not an object is a WeightsMissing naming it, since the folder is then incomplete for the loader too."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsMissing(f"{path} is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise WeightsMissing(f"{path} is not a JSON object")
    return data


def pipeline_components(folder: Path) -> dict[str, str]:
    """Component name -> library ("transformers", "diffusers", a pipeline module...) of each component the folder's
    model_index.json lists; a component listed as [null, null] is absent by design and left out."""
    return {name: spec[0] for name, spec in read_config(folder / PIPELINE_INDEX).items()
            if not name.startswith("_") and isinstance(spec, list) and spec and spec[0] is not None}


def _component_files(name: str, library: str) -> list[tuple[str, ...]]:
    """The files component `name` needs, each as any one of a tuple of names."""
    if name.startswith("scheduler"):
        return [("scheduler_config.json",)]
    if name.startswith("tokenizer"):
        return [("tokenizer_config.json",), TOKENIZER_FILES]
    stem = "model" if library == "transformers" else "diffusion_pytorch_model"
    return [("config.json",), tuple(f"{stem}{suffix}" for suffix in WEIGHT_SUFFIXES)]


def missing_pipeline_files(folder: Path) -> list[str]:
    """Files a diffusers pipeline folder in the hub layout lacks, relative to it: model_index.json, else each listed
    component's config and weights (the first accepted name, the others in parentheses)."""
    if not (folder / PIPELINE_INDEX).is_file():
        return [PIPELINE_INDEX]
    missing = []
    for name, library in pipeline_components(folder).items():
        for choices in _component_files(name, library):
            if not any((folder / name / choice).is_file() for choice in choices):
                alternatives = f" (or {', '.join(choices[1:])})" if len(choices) > 1 else ""
                missing.append(f"{name}/{choices[0]}{alternatives}")
    return missing


@dataclass(frozen=True)
class PublishedCheckpoints:
    """One backend's published checkpoints, each a diffusers pipeline folder in the hub layout: variant name -> hub
    repository. A `weights` value is read against them, so that every message about absent weights names the
    `tag models pull` command of the variant it points at, the one command that downloads."""

    backend: str
    variants: dict[str, str]
    default: str
    licence: str

    def repo(self, variant: str) -> str:
        if variant not in self.variants:
            raise InvalidRequest(f"{self.backend} has no variant {variant!r} (variants: {', '.join(self.variants)})")
        return self.variants[variant]

    def pull_command(self, variant: str | None = None) -> str:
        return f"tag models pull {self.backend} --variant {variant or self.default} --dest DIR"

    def variant_of(self, repo_id: str | None) -> str | None:
        """The variant published as hub repository `repo_id` (None: a folder, or another repository)."""
        return next((variant for variant, repo in self.variants.items() if repo == repo_id), None)

    def source(self, weights: str) -> WeightsSource:
        """`weights` (a folder or a hub id; empty: the default variant's repository) as a WeightsSource whose
        `fetch` is the pull command of the variant it is (the default one for a folder or another repository)."""
        source = WeightsSource.locate(f"{self.backend} weights", weights, self.repo(self.default))
        return dataclasses.replace(source, fetch=self.pull_command(self.variant_of(source.hub_id)))

    def configured(self, settings: Mapping[str, Any]) -> WeightsSource:
        """The source a backend's settings name with their `weights` value (unset: the default variant's)."""
        return self.source(str(settings.get("weights") or ""))

    def local(self, folder: Path) -> WeightsSource:
        """A folder named on the command line (`tag models check`): a folder even where it reads like a hub id."""
        return self.source("").at(folder)

    def inspect(self, source: WeightsSource) -> tuple[Path | None, list[str]]:
        """The folder to read (None: a hub id not in the hub cache) and the pipeline files it lacks."""
        folder = source.folder()
        return folder, [PIPELINE_INDEX] if folder is None else missing_pipeline_files(folder)

    def missing_message(self, source: WeightsSource, folder: Path | None, missing: list[str]) -> str:
        """What is missing from `folder` (`source`'s, None when not cached) and the command that gets it."""
        if folder is None:
            return (f"{source.hub_id} is not in the Hugging Face cache and is never downloaded implicitly; run "
                    f"`{source.fetch}` and use -O weights=DIR")
        return (f"{folder} lacks {', '.join(missing)}; get the weights with `{source.fetch}` "
                f"(variants: {', '.join(self.variants)}) and use -O weights=DIR")

    def complete_folder(self, source: WeightsSource) -> Path | None:
        """The folder when it holds the whole pipeline, else None (the backend then announces its family's bounds
        rather than reading them from the checkpoint)."""
        folder, missing = self.inspect(source)
        return None if missing else folder

    def check(self, source: WeightsSource) -> Path:
        """The complete folder to load, or WeightsMissing naming the missing file and the command to get it."""
        folder, missing = self.inspect(source)
        if folder is None or missing:
            raise WeightsMissing(self.missing_message(source, folder, missing))
        return folder

    def status(self, source: WeightsSource, describe: Callable[[Path], str]) -> WeightsStatus:
        """What `tag backends` says of `source`: where it was looked for, and the missing message or what
        `describe` reads from the complete folder (e.g. the longest clip it makes)."""
        folder, missing = self.inspect(source)
        location = str(folder) if folder else f"hub:{source.hub_id} (not in the hub cache)"
        if folder is None or missing:
            return WeightsStatus(False, location, self.missing_message(source, folder, missing))
        return WeightsStatus(True, location, describe(folder))

"""WeightsSource: where one model's (or one model component's) weights are, and what is missing from them.

Every backend plugin answers the same questions before it loads anything: is the `weights` value a local folder or
a Hugging Face hub id, which of the files it needs are absent, and what sentence tells the user how to get them.
One type answers them for every plugin, so that `tag backends` and a worker's refusal read alike.

Nothing here imports torch or the hub client at import time (a torch-free frontend install imports tagcore); the
hub cache is only consulted when a method asks for it, and never over the network.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import WeightsMissing
from .options import weights_location

Required = str | tuple[str, ...]
"""A file a weights folder must hold, relative to it; a tuple means any one of those names."""

FOLDER_ITSELF = "(the folder itself)"
"""What `missing` names when the folder does not exist at all."""


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

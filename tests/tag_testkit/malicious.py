"""Hostile weight files for the loaders' safety tests: pickles that create a marker file when unpickled.

A loader passes when the marker never appears and its error names the file as unsafe or corrupt.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


class Payload:
    """Unpickling this calls `open(marker, "w")`: the marker file is the proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.marker, "w"))


def torch_checkpoint(path: Path, marker: Path, entries: dict[str, Any] | None = None) -> Path:
    """A torch checkpoint with real-looking entries plus the payload (what a tampered download looks like)."""
    import torch

    torch.save({**(entries or {"state_dict": {"w": torch.zeros(2)}}), "payload": Payload(marker)}, path)
    return path


def numpy_file(path: Path, marker: Path) -> Path:
    """A .npy holding an object array whose element is the payload."""
    array = np.empty(1, dtype=object)
    array[0] = Payload(marker)
    with open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=True)
    return path


def random_bytes(path: Path, size: int = 4096, seed: int = 0) -> Path:
    path.write_bytes(np.random.default_rng(seed).bytes(size))
    return path


def truncated_copy(source: Path, path: Path) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def assert_not_run(marker: Path) -> None:
    assert not os.path.exists(marker), f"code from a weight file ran (it created {marker})"

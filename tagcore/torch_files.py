"""Reading torch checkpoint files that users supply, without running code from them.

A torch checkpoint is a pickle, and unpickling an arbitrary file can run any code. Every backend reads its
files through `load_torch_file`: `torch.load(weights_only=True)` plus, per caller, an explicit allow-list of the
few harmless classes its official checkpoints hold. Anything else is refused with a message that names the file
as unsafe or corrupt, never with torch's advice to turn the check off. torch is imported only when called.
"""
from __future__ import annotations

import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import WeightsMissing

_CAUSE_MARKER = "WeightsUnpickler error:"


class UnsafeCheckpoint(WeightsMissing):
    """A checkpoint holds objects outside the allow-list: hostile, damaged, or of a format needing more classes."""

    code = "weights_unsafe"

    def __init__(self, message: str, *, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


def unpickling_cause(exc: BaseException) -> str:
    """The reason in torch's weights-only error (e.g. `Unsupported global: GLOBAL posix.system`), without the
    surrounding paragraphs that suggest turning the check off."""
    text = str(exc)
    if _CAUSE_MARKER in text:
        text = text.split(_CAUSE_MARKER, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    cause = lines[0].split(" Please use ", 1)[0]
    return cause[:300]


def load_torch_file(path: Path, *, what: str, how_to_get: str, allowed_globals: Sequence[Any] = ()) -> Any:
    """The object a torch file holds, loaded on the CPU, memory-mapped when the format allows, accepting only tensors, plain
    containers and numbers, and `allowed_globals`. Raises UnsafeCheckpoint (a WeightsMissing) for a file holding
    anything else and WeightsMissing for an unreadable one, both naming the file."""
    import torch

    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:  # legacy (pre-zip) pickles cannot be memory mapped
                if "mmap" not in str(exc):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        cause = unpickling_cause(exc)
        raise UnsafeCheckpoint(
            f"{what} {path} is unsafe or corrupt: it holds objects other than tensors ({cause}), so it is not "
            f"loaded (that could run code from the file). {how_to_get}", cause=cause) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, IndexError, KeyError) as exc:
        raise WeightsMissing(f"{what} {path} is corrupt: unreadable or truncated ({type(exc).__name__}: "
                             f"{unpickling_cause(exc)}). {how_to_get}") from None

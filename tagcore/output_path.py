"""Where `tag generate` writes its clips, decided and checked before any model loads.

A typo in `-o` must cost milliseconds, not a generated clip: the folder must exist or be creatable and writable,
the suffix must agree with `--format`, and a clip that still cannot be written (disk full) is saved elsewhere.
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .audio import FORMATS
from .errors import InvalidRequest

SUFFIX_FORMATS = {FORMATS[name][2]: name for name in FORMATS} | {".opus": "ogg"}


@dataclass(frozen=True)
class OutputPlan:
    """`file` (one named file) or `folder` (files named after the prompt and seed inside it), and the format."""

    fmt: str
    file: Path | None = None
    folder: Path | None = None

    def path_for(self, prompt: str, seed: int | None, number: int | None = None) -> Path:
        if self.file is not None:
            return self.file
        name = f"{slug(prompt)}-{seed}{FORMATS[self.fmt][2]}"
        if number is not None:
            name = f"{number + 1:03d}-{name}"
        return (self.folder or Path()) / name


def slug(text: str, limit: int = 40) -> str:
    text = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return text[:limit].rstrip("-") or "clip"


def plan_output(output: str | Path | None, fmt: str | None, out_dir: Path | None = None) -> OutputPlan:
    """Check `-o` / `--out-dir` against `--format`; raise InvalidRequest (exit 2) for anything that would fail
    after generation. A folder, or a path ending in a slash, means "inside it"."""
    if out_dir is not None:
        _check_writable_folder(out_dir, "--out-dir")
        return OutputPlan(fmt or "wav", folder=out_dir)
    if output is None:
        _check_writable_folder(Path.cwd(), "the current folder")
        return OutputPlan(fmt or "wav", folder=None)
    text = str(output)
    path = Path(output).expanduser()
    if text.endswith(("/", os.sep)) or path.is_dir():
        _check_writable_folder(path, "-o")
        return OutputPlan(fmt or "wav", folder=path)
    if path.exists() and not path.is_file():
        raise InvalidRequest(f"-o {path} is neither a regular file nor a folder")
    suffix = path.suffix.lower()
    if suffix:
        named = SUFFIX_FORMATS.get(suffix)
        if named is None:
            raise InvalidRequest(f"-o {path}: TAG writes {', '.join(SUFFIX_FORMATS)} files, not {suffix}; pick one "
                                 "of those suffixes")
        if fmt is not None and fmt != named:
            raise InvalidRequest(f"--format {fmt} contradicts the suffix of -o {path} ({suffix} is {named})")
        fmt = named
    elif not path.exists():
        fmt = fmt or "wav"
        path = path.with_suffix(FORMATS[fmt][2])
    fmt = fmt or "wav"
    if path.exists():
        if not os.access(path, os.W_OK):
            raise InvalidRequest(f"-o {path} exists and is not writable")
    else:
        _check_writable_folder(path.parent, f"the folder of -o {path}")
    return OutputPlan(fmt, file=path)


def _check_writable_folder(folder: Path, what: str) -> None:
    """The folder exists and is writable, or its nearest existing ancestor is (it is created when writing)."""
    existing = Path(os.path.abspath(folder))
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InvalidRequest(f"{what}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InvalidRequest(f"{what}: cannot write in {existing} (permission denied)")


def rescue_path(intended: Path) -> Path:
    """Where a clip goes when `intended` could not be written after all: a new file in the temporary folder."""
    handle, name = tempfile.mkstemp(prefix=f"{intended.stem}-", suffix=intended.suffix or ".wav")
    os.close(handle)
    return Path(name)

"""Reading batches of prompts: one per line, or CSV with a prompt (or AudioCaps `caption`) column."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidRequest

PROMPT_COLUMNS = ("prompt", "caption", "text")
DURATION_COLUMNS = ("duration", "seconds")


@dataclass(frozen=True)
class PromptEntry:
    prompt: str
    duration: float | None


def read_prompts_file(path: Path) -> list[PromptEntry]:
    """Parse `path`; CSV is recognised by a header row naming a prompt/caption column. Refuses, before any
    model loads, a file that is not text or that holds no prompt once blank and comment lines are dropped."""
    entries = _parse(path, _read_text(path))
    if not entries:
        raise InvalidRequest(f"{path} holds no prompts (only blank or # comment lines)")
    return entries


def _read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidRequest(f"{path} is not a UTF-8 text file: give one prompt per line, or a CSV") from None
    except OSError as exc:
        raise InvalidRequest(f"cannot read the prompts file {path}: {exc.strerror or exc}") from None
    if "\x00" in text:
        raise InvalidRequest(f"{path} is a binary file, not text: give one prompt per line, or a CSV")
    return text


def _parse(path: Path, text: str) -> list[PromptEntry]:
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    header = [h.strip().lower() for h in next(csv.reader([lines[0]]))]
    column = next((c for c in PROMPT_COLUMNS if c in header), None)
    if column is None:
        return [PromptEntry(line.strip(), None) for line in lines if not line.lstrip().startswith("#")]
    seconds = next((c for c in DURATION_COLUMNS if c in header), None)
    entries = []
    for number, row in enumerate(csv.DictReader(io.StringIO(text)), 2):
        row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        duration = None
        if seconds and row.get(seconds):
            try:
                duration = float(row[seconds])
            except ValueError:
                raise InvalidRequest(f"{path} line {number}: duration {row[seconds]!r} is not a number") from None
        entries.append(PromptEntry(row.get(column, ""), duration))
    return entries

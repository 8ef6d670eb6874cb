"""What the standalone speed scripts (benchmarks/*_speed.py) share: the device's name, peak memory in GiB, and
writing their rows as a CSV plus a markdown page, laid out like `tag bench`'s own results (report.py)."""
from __future__ import annotations

import resource
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .report import cpu_name, table, write_dict_csv

PEAK_MEMORY_FIELD = "peak_mem_gib"


def _is_cuda(device: Any) -> bool:
    return getattr(device, "type", str(device).split(":")[0]) == "cuda"


def device_name(device: Any) -> str:
    """The GPU's name for a CUDA device, else the CPU and torch's thread count (threads set CPU speed)."""
    import torch

    if _is_cuda(device):
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} CPU, {torch.get_num_threads()} threads"


def peak_memory_gib(device: Any) -> float:
    """CUDA: the allocator's peak since the last reset; CPU: the process's peak resident set so far, in GiB.

    getrusage costs nothing and cannot miss a short spike, unlike sampling (memory.PeakMemory); it cannot be reset,
    so on the CPU every row reports the process's peak up to that row, model load included.
    """
    if _is_cuda(device):
        import torch

        return torch.cuda.max_memory_allocated(device) / 2**30
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**30 if sys.platform == "darwin" else peak / 2**20


def peak_memory_note(device: Any) -> str:
    """One sentence for a results page saying what the peak memory column measured on `device`."""
    source = "torch.cuda.max_memory_allocated" if _is_cuda(device) else "the process's peak resident set so far"
    return f"{PEAK_MEMORY_FIELD} is {source}, in GiB (2**30 bytes)."


def write_results(stem: Path, fields: Sequence[str], rows: Sequence[Mapping[str, Any]],
                  intro_lines: Sequence[str], table_fields: Sequence[str] | None = None) -> list[Path]:
    """Write `stem`.csv (every field) and `stem`.md (the intro lines, then a table); returns both paths.

    `table_fields` picks the table's columns where the intro already states the ones every row shares.
    """
    stem.parent.mkdir(parents=True, exist_ok=True)
    columns = list(fields if table_fields is None else table_fields)
    csv_path = write_dict_csv(stem.with_name(stem.name + ".csv"), fields, rows)
    markdown = table(columns, ([str(row[c]) for c in columns] for row in rows))
    md_path = stem.with_name(stem.name + ".md")
    md_path.write_text("\n".join([*intro_lines, "", markdown]) + "\n")
    return [csv_path, md_path]

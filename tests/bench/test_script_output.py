"""The writer the standalone speed scripts share: the CSV keeps every field, the markdown page the chosen ones."""
from __future__ import annotations

import csv

import pytest

from tag_bench.script_output import device_name, peak_memory_gib, peak_memory_note, write_results

FIELDS = ["backend", "batch", "wall_s", "peak_mem_gib"]
ROWS = [{"backend": "tone", "batch": 1, "wall_s": 0.125, "peak_mem_gib": 0.5},
        {"backend": "tone", "batch": 4, "wall_s": 0.25, "peak_mem_gib": 0.75}]


def test_writes_csv_with_header_and_rows_and_markdown_after_intro(tmp_path):
    paths = write_results(tmp_path / "new" / "speed_cpu", FIELDS, ROWS, ["# Speed", "", "setup line"])

    assert paths == [tmp_path / "new" / "speed_cpu.csv", tmp_path / "new" / "speed_cpu.md"]
    with paths[0].open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == FIELDS
        assert list(reader) == [{k: str(v) for k, v in row.items()} for row in ROWS]
    assert paths[1].read_text().splitlines() == [
        "# Speed", "", "setup line", "",
        "| backend | batch | wall_s | peak_mem_gib |", "|---|---|---|---|",
        "| tone | 1 | 0.125 | 0.5 |", "| tone | 4 | 0.25 | 0.75 |",
    ]


def test_table_fields_pick_markdown_columns_but_csv_keeps_all(tmp_path):
    csv_path, md_path = write_results(tmp_path / "s", FIELDS, ROWS, ["# T"], table_fields=["batch", "wall_s"])

    assert csv_path.read_text().splitlines()[0] == ",".join(FIELDS)
    assert md_path.read_text().splitlines()[2:] == ["| batch | wall_s |", "|---|---|", "| 1 | 0.125 |",
                                                   "| 4 | 0.25 |"]


def test_a_row_with_a_field_not_in_the_header_is_refused(tmp_path):
    with pytest.raises(ValueError):
        write_results(tmp_path / "s", ["batch"], ROWS, ["# T"])


def test_cpu_device_name_and_peak_memory_in_gib():
    torch = pytest.importorskip("torch")
    assert device_name(torch.device("cpu")).endswith(f"CPU, {torch.get_num_threads()} threads")
    assert device_name("cpu") == device_name(torch.device("cpu"))
    import psutil

    current_gib = psutil.Process().memory_info().rss / 2**30
    peak = peak_memory_gib("cpu")
    assert current_gib * 0.9 <= peak < 64  # the peak is at least the current RSS, and in GiB (not KiB or MiB)
    assert "GiB" in peak_memory_note("cpu") and "peak_mem_gib" in peak_memory_note("cpu")

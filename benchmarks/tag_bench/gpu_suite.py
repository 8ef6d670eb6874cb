"""The GPU suite's one results table (benchmarks/gpu_suite.sh): every speed script adds its rows here with `--suite`.

Why one table: a lent GPU comes for minutes, by chance, so every family's figures are taken in one device call
and must land in one place, comparable row by row and kept across sessions. A run keeps its rows as JSON lines
(`rows.jsonl`: the CSV columns, the stage that made the row and a free-text note) and renders, after every row
added, `gpu_suite.csv` (exactly COLUMNS) and `gpu_suite.md` (the same plus stage and notes), so a run cut at its
time limit still leaves what it measured. `merge` appends a run's rows to benchmarks/results/ afterwards.

    python -m tag_bench.gpu_suite failed OUT --stage NAME --backend B --rc 124 --seconds 90   # the shell, on failure
    python -m tag_bench.gpu_suite note OUT --stage cuda_tests --variant "pytest -m cuda" --notes "3 passed"
    uv run python -m tag_bench.gpu_suite merge OUT      # here, after the device run: into benchmarks/results/
    uv run python -m tag_bench.gpu_suite check OUT --stages a,b   # the smoke test's checks, for any run
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .report import table

COLUMNS = ("backend", "variant", "device", "dtype", "sampler", "steps", "duration_s", "batch", "s_per_clip",
           "warmup_s", "peak_gib", "commit")
NUMERIC = ("steps", "duration_s", "batch", "s_per_clip", "warmup_s", "peak_gib")
EXTRA = ("stage", "notes")
ROWS, CSV, MARKDOWN = "rows.jsonl", "gpu_suite.csv", "gpu_suite.md"
RESULTS = Path(__file__).resolve().parents[1] / "results"
STAGE_ENV, COMMIT_ENV = "GPU_SUITE_STAGE", "GPU_SUITE_COMMIT"
FAILED = "(stage failed)"


def commit() -> str:
    """The commit measured: GPU_SUITE_COMMIT (the bundle writes it: the device's copy has no .git), else git's."""
    if os.environ.get(COMMIT_ENV):
        return os.environ[COMMIT_ENV]
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], capture_output=True,
                              text=True, cwd=Path(__file__).parent, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() or "unknown"


def torch_device_name(device: Any) -> str:
    """The device as torch names it: the GPU's name for CUDA, `cpu` otherwise (torch gives a CPU no name)."""
    import torch

    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def dtype_name(dtype: Any) -> str:
    """`bfloat16` for torch.bfloat16, a string left as it is."""
    return str(dtype).replace("torch.", "")


def make_row(**values: Any) -> dict[str, Any]:
    """A suite row: every column present (empty where not measured), floats rounded, the commit and stage filled."""
    unknown = set(values) - set(COLUMNS) - set(EXTRA)
    if unknown:
        raise ValueError(f"not suite columns: {sorted(unknown)}")
    row: dict[str, Any] = {name: values.get(name, "") for name in (*COLUMNS, *EXTRA)}
    for name in NUMERIC:
        if isinstance(row[name], float):
            row[name] = round(row[name], 4)
    row["commit"] = row["commit"] or commit()
    row["stage"] = row["stage"] or os.environ.get(STAGE_ENV, "")
    return row


def read_rows(out: Path) -> list[dict[str, Any]]:
    path = out / ROWS
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def record(out: Path | None, rows: Iterable[Mapping[str, Any]]) -> None:
    """Append `rows` (from make_row) to the run in `out` and render its CSV and markdown again; no-op without out."""
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    with (out / ROWS).open("a") as handle:
        for row in rows:
            handle.write(json.dumps(dict(row)) + "\n")
    render(read_rows(out), out / CSV, out / MARKDOWN, heading=f"GPU suite run, commit {commit()}")


def render(rows: Sequence[Mapping[str, Any]], csv_path: Path, md_path: Path, heading: str) -> None:
    """gpu_suite.csv (exactly COLUMNS) and gpu_suite.md (one table, stage and notes added) for `rows`."""
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    md_path.write_text(markdown(rows, heading))


def markdown(rows: Sequence[Mapping[str, Any]], heading: str) -> str:
    columns = (*EXTRA[:1], *COLUMNS, *EXTRA[1:])
    return (f"## {heading}\n\n" + table(columns, ([str(row.get(c, "")) for c in columns] for row in rows)) + "\n")


def note(out: Path, stage: str, backend: str, variant: str, notes: str) -> None:
    """A row of words only: a stage that measures no speed (the CUDA tests), or one that ended without results."""
    record(out, [make_row(backend=backend, variant=variant, stage=stage, notes=notes)])


def failed(out: Path, stage: str, backend: str, rc: int, seconds: int) -> None:
    """Say that a stage ended without its results (timed out, crashed, or not run), so the table shows the gap."""
    if rc < 0:
        why = "not run: the suite's time budget was spent"
    elif rc in (124, 137):
        why = f"timed out after {seconds} s"
    else:
        why = f"exit status {rc} after {seconds} s"
    note(out, stage, backend, FAILED, f"stage {stage}: {why}; see log.txt")


def check(out: Path, stages: Sequence[str]) -> list[str]:
    """Problems with a run's files: CSV header, one row or more per stage, numbers that parse; [] when sound."""
    problems = []
    with (out / CSV).open(newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            problems.append(f"CSV columns {reader.fieldnames} are not {list(COLUMNS)}")
        csv_rows = list(reader)
    rows = read_rows(out)
    if len(csv_rows) != len(rows):
        problems.append(f"{len(csv_rows)} CSV rows for {len(rows)} recorded")
    for number, row in enumerate(csv_rows, 1):
        for name in NUMERIC:
            try:
                if row[name] != "" and float(row[name]) < 0:
                    problems.append(f"row {number}: {name} {row[name]} is negative")
            except ValueError:
                problems.append(f"row {number}: {name} {row[name]!r} is not a number")
    for stage in stages:
        measured = [r for r in rows if r["stage"] == stage and r["variant"] != FAILED]
        if not measured:
            problems.append(f"stage {stage}: no row")
    return problems


def merge(out: Path, results: Path = RESULTS) -> int:
    """Append a device run's rows to results/gpu_suite.csv and its table (with notes) to results/gpu_suite.md."""
    rows = read_rows(out)
    if not rows:
        raise SystemExit(f"{out / ROWS}: no rows to merge")
    csv_path, md_path = results / CSV, results / MARKDOWN
    new = not csv_path.is_file()
    with csv_path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerows(rows)
    devices = ", ".join(sorted({str(r["device"]) for r in rows if r["device"]}))
    commits = ", ".join(sorted({str(r["commit"]) for r in rows}))
    if not md_path.is_file():
        md_path.write_text("# GPU suite results (benchmarks/gpu_suite.sh)\n\nOne section per device run, newest "
                           "last; the same rows, without stage and notes, are in gpu_suite.csv.\n\n")
    with md_path.open("a") as handle:
        handle.write(markdown(rows, f"{devices or 'no device'}, commit {commits}"))
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    fail = sub.add_parser("failed", help="record that a stage ended without results (rc < 0: not run)")
    words = sub.add_parser("note", help="record a row of words only (e.g. the CUDA tests' summary)")
    for command in (fail, words):
        command.add_argument("out", type=Path)
        command.add_argument("--stage", required=True)
        command.add_argument("--backend", default="")
    fail.add_argument("--rc", type=int, required=True)
    fail.add_argument("--seconds", type=int, default=0)
    words.add_argument("--variant", required=True)
    words.add_argument("--notes", required=True)
    join = sub.add_parser("merge", help="append a run's rows to benchmarks/results/gpu_suite.{csv,md}")
    join.add_argument("out", type=Path)
    join.add_argument("--results", type=Path, default=RESULTS)
    test = sub.add_parser("check", help="check a run's CSV: columns, a row per stage, numbers")
    test.add_argument("out", type=Path)
    test.add_argument("--stages", default="")
    args = parser.parse_args()
    if args.command == "failed":
        failed(args.out, args.stage, args.backend, args.rc, args.seconds)
    elif args.command == "note":
        note(args.out, args.stage, args.backend, args.variant, args.notes)
    elif args.command == "merge":
        print(f"merged {merge(args.out, args.results)} rows into {args.results}")
    else:
        problems = check(args.out, [s for s in args.stages.split(",") if s])
        print("\n".join(problems) or "ok")
        raise SystemExit(1 if problems else 0)


if __name__ == "__main__":
    main()

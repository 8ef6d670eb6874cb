"""What the durable HTTP job store costs per job: SQLite and PostgreSQL against the in-memory store it replaced.

    uv run python benchmarks/job_store.py [--jobs 300] [--postgres-url URL] [--out FILE.md]

One job's life as the API server lives it, timed from the first call to the last: `add` (the submission), three
progress events (queued with a position, generating at 0.5 and 1.0), the worker's answer (a 10 s clip at 16 kHz
mono: 320 KB of WAV), a status read (`get` + `snapshot`, what a poll or an event-stream line costs) and the WAV
download (`result_bytes`). The in-memory store is the one this repository had before the durable store (read from
git at BASELINE, so it is measured, not remembered). The three stores take turns job by job, so load from other
processes falls on all of them alike; the first 20 jobs of each are warm-up. SQLite: a file in a temporary folder,
WAL, synchronous=NORMAL (the default) and =FULL (every commit waits for the disk). PostgreSQL: a private cluster
(tests/tag_testkit, fsync on, progress events committed without waiting for the WAL flush) on 127.0.0.1 unless
`--postgres-url` names one.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tag_bench.report import show
from tag_bench.side_by_side import percentile
from tag_http.jobs import JobStore
from tagcore import Audio
from tagcore.messages import ProgressEvent, SoundRequest, SoundResponse

BASELINE = "df020d6"
"""The last commit with the in-memory JobStore."""
WARMUP = 20
AUDIO = Audio((np.sin(np.linspace(0, 8000, 160_000, dtype=np.float32)) * 0.5)[None, :], 16000)


def in_memory_store_class() -> Any:
    """The JobStore of BASELINE, loaded as a module of the tag_http package (its relative imports still exist)."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(["git", "-C", str(root), "show", f"{BASELINE}:frontends/http/tag_http/jobs.py"],
                            check=True, capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader("tag_http.jobs_in_memory", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "tag_http"
    sys.modules[spec.name] = module
    exec(compile(source, f"{BASELINE}:jobs.py", "exec"), module.__dict__)
    return module.JobStore


def lifecycle(store: Any, index: int) -> float:
    """Milliseconds one job's store calls take, submission to download."""
    request = SoundRequest(f"bench {index}", 10.0, "tone", seed=index, deadline=time.time() + 60)
    start = time.perf_counter()
    record, _ = store.add(request, "bench", "fingerprint")
    for event in (ProgressEvent(request.request_id, "queued", position=1),
                  ProgressEvent(request.request_id, "generating", fraction=0.5),
                  ProgressEvent(request.request_id, "generating", fraction=1.0)):
        store.on_event(event)
    store.on_event(SoundResponse(request.request_id, ok=True, audio=AUDIO, seed=index, backend="tone"))
    status = store.get(request.request_id)
    store.snapshot(status)
    data = store.result_bytes(status, "wav")
    elapsed = (time.perf_counter() - start) * 1000
    assert status.state == "done" and data is not None and len(data) > 300_000
    return elapsed


def run(jobs: int, postgres_url: str) -> dict[str, list[float]]:
    folder = Path(tempfile.mkdtemp(prefix="tag-bench-store-"))
    stores: dict[str, Any] = {
        "in-memory (before)": in_memory_store_class()(3600.0),
        "sqlite": JobStore(3600.0, url=f"sqlite:///{folder}/jobs.sqlite"),
        "sqlite ?synchronous=full": JobStore(3600.0, url=f"sqlite:///{folder}/full.sqlite?synchronous=full"),
        "postgresql": JobStore(3600.0, url=postgres_url),
    }
    times: dict[str, list[float]] = {name: [] for name in stores}
    try:
        for index in range(jobs + WARMUP):
            for name, store in stores.items():
                elapsed = lifecycle(store, index)
                if index >= WARMUP:
                    times[name].append(elapsed)
    finally:
        for store in stores.values():
            store.close()
        shutil.rmtree(folder, ignore_errors=True)
    return times


def report(times: dict[str, list[float]], command: str) -> str:
    base = times["in-memory (before)"]
    lines = [
        "# HTTP job store: cost per job lifecycle", "",
        f"{datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at the end (other processes), Python {platform.python_version()}, "
        f"{len(base)} jobs per store (after {WARMUP} warm-up), stores taking turns job by job.",
        "One lifecycle: `add`, three progress events, the answer with a 10 s 16 kHz clip (320 KB WAV), a status"
        " read (`get` + `snapshot`) and the WAV download, timed end to end (see the script's docstring). Added:"
        " the store's percentile minus the in-memory store's.",
        f"Command: `{command}`", "",
        "| store | p50 ms | p99 ms | mean ms | added p50 ms | added p99 ms |", "|---|---|---|---|---|---|",
    ]
    for name, values in times.items():
        added = ("-", "-") if values is base else (
            f"{percentile(values, 0.5) - percentile(base, 0.5):.2f}",
            f"{percentile(values, 0.99) - percentile(base, 0.99):.2f}")
        lines.append(f"| {name} | {percentile(values, 0.5):.2f} | {percentile(values, 0.99):.2f} | "
                     f"{statistics.fmean(values):.2f} | {added[0]} | {added[1]} |")
    return "\n".join(lines) + "\n"


def with_postgres(body: Callable[[str], str], url: str) -> str:
    if url:
        return body(url)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from tag_testkit.postgres import start_postgres

    root = Path(tempfile.mkdtemp(prefix="tag-postgres-"))
    node = start_postgres(root, durable=True)
    try:
        return body(node.new_database())
    finally:
        node.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--postgres-url", default="", help="an existing database (default: a private cluster)")
    parser.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args()
    command = "uv run python benchmarks/job_store.py " + " ".join(sys.argv[1:])
    table = with_postgres(lambda url: report(run(args.jobs, url), command.strip()), args.postgres_url)
    show(table, args.out)


if __name__ == "__main__":
    main()

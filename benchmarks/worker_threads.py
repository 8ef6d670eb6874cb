"""CPU workers sharing one machine: throughput of 1 and 2 `tag worker` processes, with and without thread sharing.

    uv run python benchmarks/worker_threads.py [--jobs 24] [--out benchmarks/results/worker_threads_cpu.md]

Every worker serves `mms_tts` (the real VITS inference path of the speech plugin) with the tiny random VITS the
tests build, over a private RabbitMQ node, one request per batch. Configurations, each timed from the first
submit to the last answer with the workers already loaded:
- 1 worker, default threads (cores / workers on the machine = all cores), and with one thread;
- 2 workers, default threads (each takes half the cores);
- 2 workers, `--threads <cores>` each: what torch does by itself (every process takes every core).
Needs the rabbitmq-server package. Timings on a shared machine are noisy: compare the ratios of one run.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent / "tests"))

from rabbitmq_latency import start_workers, stop_workers, timed_batch, wait_consumers, workers_queue  # noqa: E402
from tag_bench.report import show  # noqa: E402
from tag_rabbitmq.devbroker import BrokerNode  # noqa: E402
from tag_testkit import tiny_speech  # noqa: E402
from tagcore.config import load_config  # noqa: E402
from tagcore.messages import SoundRequest  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog while the rain falls on the old tin roof."


def run(config, env: dict[str, str], url: str, workers: int, jobs: int, extra: tuple[str, ...]) -> float:
    """Jobs per second of `workers` processes started with `extra` arguments."""
    procs = start_workers(env, workers, max_batch=1, backend="mms_tts", extra=extra, plugins="rabbitmq,speech")
    try:
        wait_consumers(url, workers_queue(env, "mms_tts"), workers, timeout=300)
        timed_batch(config, [SoundRequest(TEXT, 20.0, "mms_tts", seed=i) for i in range(workers)], 600)  # warm-up
        requests = [SoundRequest(TEXT, 20.0, "mms_tts", seed=100 + i) for i in range(jobs)]
        return jobs / timed_batch(config, requests, 1800)
    finally:
        stop_workers(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    folder = Path(tempfile.mkdtemp(prefix="tag-bench-threads-"))
    weights = tiny_speech.build_mms(folder)
    node = BrokerNode(folder / "broker")
    url = node.start().url
    env = {"TAG_BROKER_URL": url, "TAG_CONFIG": "/nonexistent/tag-bench.toml",
           "TAG_RABBITMQ_REQUEST_QUEUE": "benchRequest", "TAG_RABBITMQ_RESPONSE_QUEUE": "benchResponse",
           "TAG_RABBITMQ_DEAD_LETTER_QUEUE": "benchDead"}
    config = load_config(environ=env)
    common = ("-O", f"weights={weights}", "--device", "cpu")
    try:
        rows = [
            ("1 worker, default threads", run(config, env, url, 1, args.jobs, common)),
            ("1 worker, --threads 1", run(config, env, url, 1, args.jobs, (*common, "--threads", "1"))),
            ("2 workers, default threads (shared)", run(config, env, url, 2, args.jobs, common)),
            (f"2 workers, --threads {cores} each (torch's own default)",
             run(config, env, url, 2, args.jobs, (*common, "--threads", str(cores)))),
        ]
    finally:
        node.destroy()
    base = rows[0][1]
    lines = [
        "# CPU workers sharing a machine",
        "",
        f"- date: {datetime.date.today().isoformat()}; {cores} usable cores ({platform.machine()}); "
        f"Python {platform.python_version()}, torch {version('torch')}, transformers {version('transformers')}",
        f"- command: `uv run python benchmarks/worker_threads.py --jobs {args.jobs}`",
        "- workload: mms_tts (VITS) with the tests' tiny random weights, one request per batch, over RabbitMQ",
        "- the machine was shared with other work while this ran: ratios within this run are what counts",
        "",
        "| configuration | jobs/s | vs 1 worker |",
        "|---|---|---|",
        *(f"| {name} | {rate:.2f} | {rate / base:.2f}x |" for name, rate in rows),
        "",
        f"Target: 2 workers >= 1.3x one worker: {'met' if rows[2][1] / base >= 1.3 else 'NOT met'} "
        f"({rows[2][1] / base:.2f}x).",
    ]
    show("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()

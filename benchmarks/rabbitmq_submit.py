"""What one `submit` costs on the RabbitMQ transport when many arrive at once: today's code and a baseline side by side.

    uv run python benchmarks/rabbitmq_submit.py [--jobs 200] [--rounds 3] [--baseline eeb1f00] [--out FILE.md]

`--jobs` threads call `client.submit` on one RabbitClient at the same instant (a barrier), as the HTTP server's
request threads do when 200 jobs are posted together; each submit is timed from the call until it returns (the
broker confirmed the request). No worker runs: the requests stay in their queue, which is deleted after each
round. One warm-up submit per round declares the backend's queues first, so both codes are timed on a connected
client that has already declared them. Each round runs the baseline and this tree in turn, each in a fresh child
process whose PYTHONPATH puts that code's `tag_rabbitmq` first (the baseline is taken from git with
`git archive <commit> transports/rabbitmq/tag_rabbitmq`), against one private broker node.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from tag_bench.report import show
from tag_bench.side_by_side import (alternate, child_env, child_result, code_table, percentile, report_head,
                                     round_table)


def child(jobs: int) -> None:
    """In the child process: time `jobs` concurrent submits on one client; print the result as JSON."""
    import pika

    from tagcore.config import load_config
    from tagcore.messages import SoundRequest
    from tagcore.runtime import build_transport

    config = load_config(environ=dict(os.environ))
    transport = build_transport(config, "rabbitmq")
    client = transport.client(name="bench")
    client.submit(SoundRequest("warm-up", 1.0, "tone"))
    barrier = threading.Barrier(jobs + 1)
    latencies: list[float] = [0.0] * jobs

    def submit(i: int) -> None:
        request = SoundRequest(f"job {i}", 1.0, "tone", priority=i % 3)
        barrier.wait()
        start = time.perf_counter()
        client.submit(request)
        latencies[i] = (time.perf_counter() - start) * 1000

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(jobs)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    transport.close()
    connection = pika.BlockingConnection(pika.URLParameters(os.environ["TAG_BROKER_URL"]))
    channel = connection.channel()
    prefix = os.environ["TAG_RABBITMQ_REQUEST_QUEUE"]
    for name in [f"{prefix}.tone", *(f"{prefix}.tone.p{p}" for p in range(1, 10)), f"{prefix}.tone.workers",
                 os.environ["TAG_RABBITMQ_RESPONSE_QUEUE"] + ".bench"]:
        channel.queue_delete(name)
    connection.close()
    print(json.dumps({"latencies_ms": latencies, "wall_s": wall}))


def run_variant(url: str, jobs: int, pythonpath: Path | None, tag: str) -> dict:
    env = child_env(url, f"sub{os.getpid()}{tag}", pythonpath)
    return child_result(__file__, ["--child", "--jobs", str(jobs)], env, timeout=600)


def summary(runs: list[dict]) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, submits/s) over the runs' submits (submits/s: the median of the runs)."""
    latencies = [value for run in runs for value in run["latencies_ms"]]
    rate = statistics.median(len(run["latencies_ms"]) / run["wall_s"] for run in runs)
    return statistics.median(latencies), percentile(latencies, 0.99), rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", default="eeb1f00", help="git commit whose tag_rabbitmq is the baseline")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.child:
        child(args.jobs)
        return

    from tag_rabbitmq.devbroker import BrokerNode

    node = BrokerNode(tempfile.mkdtemp(prefix="tag-bench-rabbitmq-"))
    url = node.start().url
    try:
        results = alternate(args.baseline, args.rounds, lambda path, tag: run_variant(url, args.jobs, path, tag),
                            lambda run: f"p50 {summary([run])[0]:.1f} ms")
    finally:
        node.destroy()
    command = (f"uv run python benchmarks/rabbitmq_submit.py --jobs {args.jobs} --rounds {args.rounds} "
               f"--baseline {args.baseline}")
    lines = [
        *report_head("RabbitMQ transport: submit latency with many submits at once", command,
                     f"{args.jobs} threads call `client.submit` at once on one client, {args.rounds} rounds, each a "
                     "fresh process per code; a submit returns when the broker confirmed its request"),
        code_table(results, args.baseline, ["p50 ms", "p99 ms", "submits/s"],
                   lambda runs: [f"{v:.1f}" for v in summary(runs)]),
        "",
        "Per round (p50 / p99 ms, submits/s):",
        "",
        round_table(results, lambda run: "{:.1f} / {:.1f}, {:.0f}".format(*summary([run]))),
    ]
    show("\n".join(lines) + "\n", args.out)

if __name__ == "__main__":
    main()

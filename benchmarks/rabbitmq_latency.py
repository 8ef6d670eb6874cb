"""What the RabbitMQ transport costs: added latency over the in-process transport, and worker scaling.

    uv run python benchmarks/rabbitmq_latency.py [--requests 200] [--jobs-per-worker 12] [--out FILE.md]

Latency: one request at a time, a 10 s clip at 16 kHz (640 KB of float32 audio back) from the instant test
backend ("tone", delay 0), measured from submit to response by the same ResponseWaiter code the CLI uses.
In-process: worker thread in this process. RabbitMQ: one `tag worker` process and a private broker node.
Throughput: `--jobs-per-worker` x N requests of a fixed-time backend (tone with delay 0.5 s, max batch 1) through 1, 2 and 4
worker processes. Needs the rabbitmq-server package (a private node is started and deleted afterwards) or
`--broker-url` for an existing broker. The test backend comes from the tag-testkit workspace package.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path

import pika

import tag_testkit.tone as tone
from tag_bench.report import show
from tag_bench.side_by_side import percentile
from tag_rabbitmq.devbroker import BrokerNode
from tagcore import plugins
from tagcore.client import ResponseWaiter
from tagcore.config import load_config
from tagcore.messages import SoundRequest
from tagcore.runtime import build_backend, build_transport
from tagcore.worker import GeneratorService, served_specs, start_embedded_worker


def measure_latency(transport, requests: int) -> list[float]:
    client = transport.client()
    waiter = ResponseWaiter(client)
    latencies = []
    for i in range(requests + 5):
        request = SoundRequest(f"latency {i}", 10.0, "tone", seed=i, options={"delay": 0.0})
        start = time.perf_counter()
        response = waiter.submit_and_wait(request, 30)
        elapsed = time.perf_counter() - start
        assert response.ok and response.audio.frames == 160_000, response.error_message
        if i >= 5:  # warm-up: connections, queue declarations, first-call costs
            latencies.append(elapsed * 1000)
    client.close()
    return latencies


def start_workers(env: dict[str, str], count: int, max_batch: int, backend: str = "tone",
                  extra: tuple[str, ...] = (), plugins: str = "rabbitmq") -> list[subprocess.Popen]:
    """`count` x `tag worker --transport rabbitmq -b BACKEND ... EXTRA` processes (`plugins` and the tests'
    tone backend loaded)."""
    tag = Path(sys.executable).with_name("tag")
    child_env = {**os.environ, **env, "TAG_PLUGINS": plugins, "TAG_PLUGIN_MODULES": "tag_testkit.tone"}
    return [subprocess.Popen([str(tag), "worker", "--transport", "rabbitmq", "-b", backend, "--max-batch",
                              str(max_batch), *extra], env=child_env, stdout=subprocess.DEVNULL,
                             stderr=None if os.environ.get("TAG_BENCH_VERBOSE") else subprocess.DEVNULL)
            for _ in range(count)]


def workers_queue(env: dict[str, str], backend: str = "tone") -> str:
    """The queue whose consumer count is the number of workers serving `backend`."""
    return f"{env['TAG_RABBITMQ_REQUEST_QUEUE']}.{backend}.workers"


def wait_consumers(url: str, queue: str, count: int, timeout: float = 120) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            try:
                if channel.queue_declare(queue, passive=True).method.consumer_count >= count:
                    return
            except pika.exceptions.ChannelClosedByBroker:
                channel = connection.channel()
            time.sleep(0.2)
        raise RuntimeError(f"{count} workers never attached to {queue}")
    finally:
        connection.close()


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait(30)


def timed_batch(config, requests: list[SoundRequest], timeout: float) -> float:
    """Seconds from submitting every request (one new client) until the last answer; any error is fatal."""
    transport = build_transport(config, "rabbitmq")
    client = transport.client()
    done: set[str] = set()
    finished = threading.Event()

    def on_event(event) -> None:
        if event.kind == "response":
            assert event.ok, event.error_message
            done.add(event.request_id)
            if len(done) == len(requests):
                finished.set()
    client.add_listener(on_event)
    start = time.perf_counter()
    for request in requests:
        client.submit(request)
    if not finished.wait(timeout):
        raise RuntimeError("the run did not finish")
    elapsed = time.perf_counter() - start
    transport.close()
    return elapsed


def throughput(config, env, url: str, workers: int, jobs: int, delay: float) -> float:
    procs = start_workers(env, workers, max_batch=1)
    try:
        wait_consumers(url, workers_queue(env), workers)
        requests = [SoundRequest(f"job {i}", 1.0, "tone", seed=i, options={"delay": delay}) for i in range(jobs)]
        return jobs / timed_batch(config, requests, jobs * delay + 60)
    finally:
        stop_workers(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--jobs-per-worker", type=int, default=12)
    parser.add_argument("--delay", type=float, default=0.5)
    parser.add_argument("--broker-url", default=None)
    parser.add_argument("--machine", default=platform.processor() or platform.machine())
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    plugins.register_plugin(tone, name="tag_testkit.tone")
    node = None
    url = args.broker_url
    if url is None:
        node = BrokerNode(tempfile.mkdtemp(prefix="tag-bench-rabbitmq-"))
        url = node.start().url
    prefix = f"bench{os.getpid()}"
    env = {"TAG_BROKER_URL": url, "TAG_CONFIG": "/nonexistent/tag-bench.toml",
           "TAG_RABBITMQ_REQUEST_QUEUE": f"{prefix}Request", "TAG_RABBITMQ_RESPONSE_QUEUE": f"{prefix}Response",
           "TAG_RABBITMQ_DEAD_LETTER_QUEUE": f"{prefix}Dead", "TAG_RABBITMQ_CATALOG_QUEUE": f"{prefix}Catalog"}
    config = load_config(environ=env)
    try:
        inprocess = build_transport(config, "inprocess")
        served = {"tone": build_backend("tone", config)}
        service = GeneratorService(served, inprocess.job_source(served_specs(served)), config, max_batch=1)
        _, stop = start_embedded_worker(service)
        local = measure_latency(inprocess, args.requests)
        stop.set()

        procs = start_workers(env, 1, max_batch=1)
        try:
            wait_consumers(url, workers_queue(env), 1)
            rabbit_transport = build_transport(config, "rabbitmq")
            remote = measure_latency(rabbit_transport, args.requests)
            rabbit_transport.close()
        finally:
            stop_workers(procs)
        rates = {n: throughput(config, env, url, n, args.jobs_per_worker * n, args.delay) for n in (1, 2, 4)}
    finally:
        if node is not None:
            node.destroy()

    rows = [(name, statistics.median(v), percentile(v, 0.99)) for name, v in (("in-process", local),
                                                                              ("rabbitmq", remote))]
    added50 = rows[1][1] - rows[0][1]
    added99 = rows[1][2] - rows[0][2]
    lines = [
        "# RabbitMQ transport: added latency and worker scaling",
        "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {args.machine}; Python {platform.python_version()}, pika {version('pika')}, "
        f"broker {'private node (Debian rabbitmq-server)' if node else 'external'}",
        f"- command: `uv run python benchmarks/rabbitmq_latency.py --requests {args.requests} --jobs-per-worker {args.jobs_per_worker}`",
        "",
        f"## Latency, {args.requests} sequential requests, 10 s clip at 16 kHz, instant backend",
        "",
        "| transport | p50 ms | p99 ms |",
        "|---|---|---|",
        *[f"| {name} | {p50:.2f} | {p99:.2f} |" for name, p50, p99 in rows],
        f"| **added by RabbitMQ** | **{added50:.2f}** | **{added99:.2f}** |",
        "",
        f"## Throughput, tone backend with {args.delay} s per request, max batch 1, {args.jobs_per_worker} jobs per worker",
        "",
        "| workers | jobs/s | speed-up |",
        "|---|---|---|",
        *[f"| {n} | {rate:.2f} | {rate / rates[1]:.2f}x |" for n, rate in rates.items()],
        "",
        f"Targets: added p50 <= 10 ms ({'met' if added50 <= 10 else 'NOT met'}); "
        f"4 workers >= 3.6x one ({'met' if rates[4] / rates[1] >= 3.6 else 'NOT met'}).",
    ]
    show("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()

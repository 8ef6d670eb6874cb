"""How fast `POST /v1/jobs` answers when many jobs arrive at once, for one or more source trees side by side.

    uv run python benchmarks/submit_latency.py [--transport rabbitmq|inprocess] [--jobs 200] [--clients 50]
        [--baseline-tree DIR] [--tree DIR] [--rounds 3] [--post-only] [--out benchmarks/results/FILE.md]

Per tree and round, a fresh `tag serve` of that tree runs as a child process with a private SQLite job store, no
rate limit and job limits above `--jobs`: `--transport rabbitmq` against a private broker node (Debian's
rabbitmq-server; one node for the whole run, fresh queue names per server) with a `tag worker -b tone` of the same
tree, or `--transport inprocess` with the tone backend embedded in the server (the HTTP side alone). After a
warm-up (`--warmup` jobs one by one, each waited for), `--clients` concurrent clients (asyncio + httpx, one
connection each) submit `--jobs` jobs between them as fast as the server answers; every POST is timed from send to
response, and the run waits until every job is done (a job that fails or never finishes fails the benchmark). The
jobs are 1 s tone clips with no delay, so the worker answers while submissions still arrive, as in real use.
`--post-only` measures the POST path alone: the jobs ask the tone backend to sleep 120 s, so the worker sleeps on
its first batch while the rest wait in the queue, and every job is cancelled after the burst.

A tree runs from its own sources: its folders (the root, frontends/*, transports/*, plugins/*, tests,
benchmarks) go first on PYTHONPATH, with this environment's installed dependencies. Make a baseline tree with
`git worktree add /tmp/tag-base eeb1f00` or `git archive eeb1f00 | tar -x -C /tmp/tag-base`. Trees take turns
within each round, so load from other processes falls on all of them alike.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tag_bench.report import show
from tag_bench.side_by_side import percentile
from tag_rabbitmq.devbroker import BrokerNode, free_port

ROOT = Path(__file__).resolve().parent.parent
WAIT = 120.0
"""Seconds allowed for a server to start, a worker to attach, or the submitted jobs to finish."""
POST_ONLY_DELAY = 120.0
"""The tone backend's longest delay: with `--post-only` no job finishes during a run."""


@dataclass
class Run:
    """One measured burst: every POST's latency in ms and the burst's wall time in s."""

    tree: str
    latencies: list[float]
    seconds: float

    def percentile(self, q: float) -> float:
        return percentile(self.latencies, q)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds


def source_path(tree: Path) -> str:
    """PYTHONPATH that makes a child process import `tree`'s own packages before the installed ones."""
    folders = [tree] + [p for group in ("frontends", "transports", "plugins") for p in sorted((tree / group).glob("*"))
                        if p.is_dir()]
    folders += [tree / "tests", tree / "benchmarks"]
    return os.pathsep.join(str(f) for f in folders if f.is_dir())


def describe(tree: Path) -> str:
    """The tree's path and commit (plus a mark when it has uncommitted changes), for the report."""
    try:
        commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], check=True,
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                               check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(tree)
    return f"{tree} @ {commit}{' + uncommitted changes' if dirty else ''}"


def tag_process(tree: Path, env: dict[str, str], args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """`tag ARGS` running `tree`'s code, logging to `log`."""
    child = {**os.environ, **env, "PYTHONPATH": source_path(tree), "TAG_PLUGIN_MODULES": "tag_testkit.tone"}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-c", "from tagcore.cli import main; main()", *args], env=child,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_until(check: Callable[[], bool], what: str, log: Path) -> None:
    end = time.monotonic() + WAIT
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not happen in {WAIT:g} s; log {log}:\n{log.read_text()[-3000:]}")


def healthy(url: str, backends: int) -> bool:
    try:
        health = httpx.get(f"{url}/v1/health", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return False
    return bool(health.get("backends_served", 0) >= backends)


@contextmanager
def server(tree: Path, transport: str, broker_url: str | None, scratch: Path, name: str) -> Iterator[str]:
    """A `tag serve` of `tree` (and for rabbitmq a `tag worker` of it) until the block ends; yields its URL."""
    port = free_port()
    env = {"TAG_CONFIG": "/nonexistent/tag-bench.toml", "TAG_HTTP_STORE": f"sqlite:///{scratch / name}.sqlite",
           "TAG_HTTP_RATE_LIMIT": "0", "TAG_HTTP_MAX_ACTIVE_PER_CLIENT": "100000", "TAG_HTTP_MAX_PENDING": "100000",
           "TAG_HTTP_MAX_CONNECTIONS": "100000", "TAG_HTTP_REPLY_QUEUE": name}
    log = scratch / f"{name}.log"
    processes = []
    if broker_url is not None:
        env.update({"TAG_BROKER_URL": broker_url, "TAG_PLUGINS": "rabbitmq,http",
                    **{f"TAG_RABBITMQ_{kind.upper()}_QUEUE": f"{name}{kind}"
                       for kind in ("request", "response", "dead_letter", "catalog")}})
        processes.append(tag_process(tree, env, ["worker", "--transport", "rabbitmq", "-b", "tone"], log))
        processes.append(tag_process(tree, env, ["serve", "--transport", "rabbitmq", "--port", str(port)], log))
    else:
        env["TAG_PLUGINS"] = "inprocess,http"
        processes.append(tag_process(tree, env, ["serve", "--transport", "inprocess", "-b", "tone", "--port",
                                                 str(port)], log))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(url, 1), f"{name}: the server answering with a live tone worker", log)
        yield url
    finally:
        for process in reversed(processes):
            stop(process)


def job(index: int, delay: float = 0.0) -> dict[str, object]:
    return {"prompt": f"submit benchmark job {index}", "backend": "tone", "duration": 1.0, "seed": index,
            "options": {"delay": delay}}


def cancel_all(url: str, ids: list[str]) -> None:
    """Cancel jobs that would take too long (`--post-only`); each must still be unfinished."""
    with httpx.Client(base_url=url, timeout=30) as http:
        for job_id in ids:
            reply = http.delete(f"/v1/jobs/{job_id}")
            if reply.status_code != 200:
                raise RuntimeError(f"DELETE of job {job_id} answered {reply.status_code}: {reply.text}")


def wait_done(url: str, ids: list[str], log: Path) -> None:
    """Wait until every job finished; any job that did not end `done` fails the benchmark."""
    pending = set(ids)

    def finished() -> bool:
        for job_id in list(pending):
            state = httpx.get(f"{url}/v1/jobs/{job_id}", timeout=30).json()["state"]
            if state in ("queued", "running"):
                return False
            if state != "done":
                raise RuntimeError(f"job {job_id} ended {state}; log {log}")
            pending.discard(job_id)
        return True

    wait_until(finished, f"{len(ids)} jobs finishing", log)


async def burst(url: str, jobs: int, clients: int, delay: float) -> tuple[list[float], float, list[str]]:
    """`jobs` POSTs from `clients` concurrent connections: latencies (ms), wall seconds, job ids."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(jobs):
        queue.put_nowait(index)
    latencies: list[float] = []
    ids: list[str] = []
    start = asyncio.Event()

    async def client() -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
            await http.get("/v1/health")  # connected before the burst starts
            await start.wait()
            while not queue.empty():
                body = job(queue.get_nowait(), delay)
                sent = time.perf_counter()
                reply = await http.post("/v1/jobs", json=body)
                latencies.append((time.perf_counter() - sent) * 1000)
                if reply.status_code != 202:
                    raise RuntimeError(f"POST /v1/jobs answered {reply.status_code}: {reply.text}")
                ids.append(reply.json()["id"])

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await asyncio.sleep(0.5)  # every client connected
    began = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    return latencies, time.perf_counter() - began, ids


def measure(tree: Path, label: str, args: argparse.Namespace, broker_url: str | None, scratch: Path,
            name: str) -> Run:
    log = scratch / f"{name}.log"
    with server(tree, args.transport, broker_url, scratch, name) as url:
        warm = [httpx.post(f"{url}/v1/jobs", json=job(args.jobs + i), timeout=30).json()["id"]
                for i in range(args.warmup)]
        wait_done(url, warm, log)
        delay = POST_ONLY_DELAY if args.post_only else 0.0
        latencies, seconds, ids = asyncio.run(burst(url, args.jobs, args.clients, delay))
        if args.post_only:
            cancel_all(url, ids)
        else:
            wait_done(url, ids, log)
    return Run(label, latencies, seconds)


@contextmanager
def broker(transport: str, scratch: Path) -> Iterator[str | None]:
    if transport != "rabbitmq":
        yield None
        return
    node = BrokerNode(scratch / "rabbitmq")
    try:
        yield node.start().url
    finally:
        node.destroy()


def report(runs: list[Run], trees: dict[str, str], args: argparse.Namespace) -> str:
    labels = list(trees)
    lines = [
        f"# `POST /v1/jobs` latency, {args.jobs} jobs at once from {args.clients} clients ({args.transport}"
        f"{', POST path alone' if args.post_only else ''})",
        "",
        f"- date: {datetime.date.today().isoformat()}; machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at the end; Python {platform.python_version()}",
        f"- command: `uv run python benchmarks/submit_latency.py {' '.join(sys.argv[1:])}`",
        *[f"- {label}: {where}" for label, where in trees.items()],
        "",
        "| tree | round | p50 ms | p99 ms | max ms | submissions/s |",
        "|---|---|---|---|---|---|",
    ]
    for label in labels:
        mine = [run for run in runs if run.tree == label]
        for number, run in enumerate(mine, 1):
            lines.append(f"| {label} | {number} | {run.percentile(0.5):.1f} | {run.percentile(0.99):.1f} | "
                         f"{max(run.latencies):.1f} | {run.rate:.0f} |")
        lines.append(f"| **{label}** | **median** | **{statistics.median(r.percentile(0.5) for r in mine):.1f}** | "
                     f"**{statistics.median(r.percentile(0.99) for r in mine):.1f}** | "
                     f"**{statistics.median(max(r.latencies) for r in mine):.1f}** | "
                     f"**{statistics.median(r.rate for r in mine):.0f}** |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=("rabbitmq", "inprocess"), default="rabbitmq")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--post-only", action="store_true", help="the POST path alone: jobs wait, then are cancelled")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the tree to measure (default: this checkout)")
    parser.add_argument("--baseline-tree", type=Path, default=None, help="another checkout, measured beside it")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args()
    trees = {"this tree": args.tree.resolve()}
    if args.baseline_tree is not None:
        trees = {"baseline": args.baseline_tree.resolve(), **trees}
    scratch = Path(tempfile.mkdtemp(prefix="tag-submit-bench-"))
    runs = []
    try:
        with broker(args.transport, scratch) as broker_url:
            for number in range(args.rounds):
                for index, (label, tree) in enumerate(trees.items()):
                    runs.append(measure(tree, label, args, broker_url, scratch, f"b{os.getpid()}r{number}t{index}"))
                    print(f"round {number + 1} {label}: p50 {runs[-1].percentile(0.5):.1f} ms, "
                          f"p99 {runs[-1].percentile(0.99):.1f} ms, {runs[-1].rate:.0f}/s", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    text = report(runs, {label: describe(tree) for label, tree in trees.items()}, args)
    show(text, args.out)


if __name__ == "__main__":
    main()

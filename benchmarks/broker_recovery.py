"""How fast the RabbitMQ transport serves again after a broker restart: today's code and a baseline side by side.

    uv run python benchmarks/broker_recovery.py [--jobs 20] [--rounds 3] [--down 5] [--baseline eeb1f00] [--out FILE.md]

One private broker node, one `tag worker --transport rabbitmq -b tone` process (the test kit's instant backend)
and one client in a child process, both running one code (PYTHONPATH puts its `tag_rabbitmq` first; the baseline
is `git archive <commit> transports/rabbitmq/tag_rabbitmq`). After a warm-up job the node is stopped, kept down
`--down` s (long enough for the reconnect backoff to grow, as in a real restart), started again, and as soon as it
accepts AMQP connections `--jobs` requests are submitted at once (one thread each). Reported: per job, the seconds
from "broker accepting connections" to its answer (p50, p90), and the first answer. Each round runs the baseline,
then this tree, on the same node.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tag_bench.report import show
from tag_bench.side_by_side import (alternate, child_env, child_result, code_table, percentile, report_head,
                                     round_table)


def child(state_dir: str, jobs: int, down: float) -> None:
    """In the child process: worker + client on this code, restart the node, time the jobs submitted after it."""
    from tag_rabbitmq.devbroker import BrokerNode
    from tagcore.config import load_config
    from tagcore.messages import SoundRequest, SoundResponse
    from tagcore.runtime import build_transport

    node = BrokerNode(state_dir)
    tag = Path(sys.executable).with_name("tag")
    worker = subprocess.Popen([str(tag), "worker", "--transport", "rabbitmq", "-b", "tone"],
                              env={**os.environ, "TAG_PLUGINS": "rabbitmq", "TAG_PLUGIN_MODULES": "tag_testkit.tone"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    transport = build_transport(load_config(environ=dict(os.environ)), "rabbitmq")
    client = transport.client(name="recovery")
    answered: dict[str, float] = {}
    done = threading.Condition()

    def on_event(event) -> None:
        if isinstance(event, SoundResponse):
            with done:
                assert event.ok, event.error_message
                answered.setdefault(event.request_id, time.monotonic())
                done.notify_all()
    client.add_listener(on_event)
    try:
        warm = SoundRequest("warm-up", 1.0, "tone", options={"delay": 0.0})
        client.submit(warm)
        with done:
            assert done.wait_for(lambda: warm.request_id in answered, 120), "the worker never answered"
        node.stop()
        time.sleep(down)
        node.start()
        back = time.monotonic()
        requests = [SoundRequest(f"after the restart {i}", 1.0, "tone", options={"delay": 0.0}) for i in range(jobs)]
        threads = [threading.Thread(target=client.submit, args=(r,)) for r in requests]
        for thread in threads:
            thread.start()
        with done:
            assert done.wait_for(lambda: all(r.request_id in answered for r in requests), 180), "jobs unanswered"
        latencies = [answered[r.request_id] - back for r in requests]
    finally:
        transport.close()
        worker.terminate()
        worker.wait(30)
    print(json.dumps({"latencies_s": latencies}))


def run_variant(state_dir: str, url: str, args: argparse.Namespace, pythonpath: Path | None, tag: str) -> dict:
    env = child_env(url, f"rec{os.getpid()}{tag}", pythonpath)
    return child_result(__file__, ["--child", state_dir, "--jobs", str(args.jobs), "--down", str(args.down)], env,
                        timeout=900)


def summary(runs: list[dict]) -> tuple[float, float, float]:
    """(p50, p90 of every job's seconds from broker back to answer, median over runs of the first answer)."""
    latencies = [value for run in runs for value in run["latencies_s"]]
    first = statistics.median(min(run["latencies_s"]) for run in runs)
    return statistics.median(latencies), percentile(latencies, 0.9), first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--down", type=float, default=5.0, help="seconds the broker stays stopped")
    parser.add_argument("--baseline", default="eeb1f00", help="git commit whose tag_rabbitmq is the baseline")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.jobs, args.down)
        return

    from tag_rabbitmq.devbroker import BrokerNode

    state_dir = tempfile.mkdtemp(prefix="tag-bench-rabbitmq-")
    node = BrokerNode(state_dir)
    url = node.start().url
    try:
        results = alternate(args.baseline, args.rounds,
                            lambda path, tag: run_variant(state_dir, url, args, path, tag),
                            lambda run: f"p50 {summary([run])[0]:.1f} s")
    finally:
        node.destroy()
    command = (f"uv run python benchmarks/broker_recovery.py --jobs {args.jobs} --rounds {args.rounds} "
               f"--down {args.down:g} --baseline {args.baseline}")
    lines = [
        *report_head("RabbitMQ transport: serving again after a broker restart", command,
                     f"one `tag worker` (tone backend, instant) and one client; the broker is stopped, kept down "
                     f"{args.down:g} s and started; {args.jobs} jobs are submitted at once as soon as it accepts "
                     "connections; seconds from then to each answer"),
        code_table(results, args.baseline, ["p50 s", "p90 s", "first answer s"],
                   lambda runs: [f"{v:.2f}" for v in summary(runs)]),
        "",
        "Per round (p50 / p90 / first answer, s):",
        "",
        round_table(results, lambda run: "{:.2f} / {:.2f} / {:.2f}".format(*summary([run]))),
    ]
    show("\n".join(lines) + "\n", args.out)

if __name__ == "__main__":
    main()

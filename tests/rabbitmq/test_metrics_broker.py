"""Metrics over a real broker: tag_queue_depth counted on the ten priority queues and scraped by Prometheus,
the autoscaling recipes evaluated against it, and `tag worker --metrics-port` counting what it generated."""
from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

import tag_rabbitmq.depths
from tag_rabbitmq.settings import RabbitSettings
from tag_rabbitmq.topology import PRIORITIES
from tag_testkit.broker import amqp_channel, broker_client, cli_worker, stop_process
from tag_testkit.prometheus import PrometheusServer, promtool_problems, values
from tagcore.messages import SoundRequest
from tagcore.metrics import Metrics

pytestmark = [pytest.mark.broker, pytest.mark.slow]
PRIORITIES_SENT = (0, 0, 3, 9, 5)
KEDA = Path(__file__).resolve().parents[2] / "deploy" / "keda"
KEDA_RABBITMQ = KEDA / "scaledobject-rabbitmq.yaml"
KEDA_PROMETHEUS = KEDA / "scaledobject-prometheus.yaml"


def metrics_url(worker) -> str:
    """The metrics address `tag worker --metrics-port 0` prints once it listens."""
    for line in worker.stdout:
        found = re.search(rb"metrics on (http://\S+)", line)
        if found:
            return found.group(1).decode()
    raise AssertionError(f"the worker exited ({worker.wait()}) without serving metrics")


def wait_depth(client, expected: int, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while (depth := client.queue_depths(["tone"])) != {"tone": expected}:
        assert time.monotonic() < end, f"queue depth stayed {depth}, expected {expected}"
        time.sleep(0.5)


def keda_queues(env: dict[str, str]) -> list[str]:
    """The RabbitMQ recipe's queue names, moved to this test's queue prefix and the tone backend."""
    (obj,) = [doc for doc in yaml.safe_load_all(KEDA_RABBITMQ.read_text()) if doc["kind"] == "ScaledObject"]
    default = RabbitSettings().request_queue
    return [t["metadata"]["queueName"].replace(default, env["TAG_RABBITMQ_REQUEST_QUEUE"], 1)
            .replace("make_an_audio", "tone") for t in obj["spec"]["triggers"]]


def keda_query() -> str:
    (obj,) = list(yaml.safe_load_all(KEDA_PROMETHEUS.read_text()))
    return obj["spec"]["triggers"][0]["metadata"]["query"].replace("make_an_audio", "tone")


def test_queue_depth_autoscaling_recipes_and_a_worker_metrics_port(rabbitmq_node, env, tmp_path):
    transport, client, log = broker_client(env)
    frontends = [Metrics(), Metrics()]  # two frontends report the same queues
    servers = []
    worker = None
    prometheus = None
    try:
        requests = [SoundRequest(prompt=f"waiting {p}", duration=1.0, backend="tone", priority=p)
                    for p in PRIORITIES_SENT]
        for request in requests:
            client.submit(request)  # no worker yet: they wait in their priority's queue
        assert client.queue_depths(["tone", "never-asked-for"]) == {"tone": 5, "never-asked-for": 0}

        connection, channel = amqp_channel(rabbitmq_node)
        try:  # the RabbitMQ recipe's ten queues exist and hold exactly what waits
            counts = [channel.queue_declare(name, passive=True).method.message_count for name in keda_queues(env)]
        finally:
            connection.close()
        assert len(counts) == PRIORITIES and sum(counts) == 5

        catalog = transport.catalog()
        for metrics in frontends:
            metrics.follow(client, catalog, names=lambda: ["tone"])
            servers.append(metrics.serve("127.0.0.1", 0))
        assert promtool_problems(frontends[0].exposition()) == ""
        prometheus = PrometheusServer(tmp_path, {"frontend": [f"127.0.0.1:{s.port}" for s in servers]})
        depth = prometheus.wait_for('tag_queue_depth{backend="tone"}', lambda r: len(r) == 2)
        assert [float(series["value"][1]) for series in depth] == [5.0, 5.0]
        assert values(prometheus.query(keda_query()), "") == {"": 5.0}  # max over frontends, not their sum

        worker = cli_worker(env, "tone", "--metrics-port", "0")
        url = metrics_url(worker)
        assert url.startswith("http://127.0.0.1:")  # bound to loopback unless --metrics-host says otherwise
        answers = log.wait_responses([r.request_id for r in requests], 60)
        assert all(answer.ok for answer in answers.values())

        scraped = httpx.get(url, timeout=30)
        assert promtool_problems(scraped.content) == ""
        worker_samples = {(s.name, frozenset(s.labels.items())): s.value
                          for family in text_string_to_metric_families(scraped.text) for s in family.samples}
        assert worker_samples[("tag_jobs_total", frozenset({"backend": "tone", "outcome": "ok"}.items()))] == 5
        assert worker_samples[("tag_audio_seconds_total", frozenset({"backend": "tone"}.items()))] == 5.0

        wait_depth(client, 0)
        prometheus.wait_for(keda_query(), lambda r: values(r, "") == {"": 0.0})
        prometheus.wait_for('tag_workers{backend="tone"}', lambda r: set(values(r, "job").values()) == {1.0})
    finally:
        if worker is not None:
            stop_process(worker)
        if prometheus is not None:
            prometheus.close()
        for server in servers:
            server.close()
        transport.close()


def test_depths_are_cached_so_scrapes_never_flood_the_broker(rabbitmq_node, env, monkeypatch):
    transport, client, _ = broker_client(env)
    try:
        client.submit(SoundRequest(prompt="one", duration=1.0, backend="tone"))
        asked: list[list[str]] = []
        depths = client._depths
        count = depths.count
        monkeypatch.setattr(depths, "count", lambda names: asked.append(list(names)) or count(names))
        monkeypatch.setattr(tag_rabbitmq.depths, "CACHE_S", 3600.0)  # a period no test run outlasts
        for _ in range(20):
            assert client.queue_depths(["tone"]) == {"tone": 1}
        assert asked == [["tone"]], "twenty scrapes within the cache period asked the broker once"
        monkeypatch.setattr(tag_rabbitmq.depths, "CACHE_S", 0.0)  # the period is over: the broker is asked again
        assert client.queue_depths(["tone"]) == {"tone": 1} and asked == [["tone"], ["tone"]]
    finally:
        transport.close()

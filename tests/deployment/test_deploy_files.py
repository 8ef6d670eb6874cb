"""deploy/: the Grafana dashboard and the KEDA autoscaling examples load, and name only what TAG really has
(metrics this code exports, the request queues the RabbitMQ transport declares)."""
import json
import re
from pathlib import Path

import pytest
import yaml

from tag_rabbitmq.settings import RabbitSettings
from tag_rabbitmq.topology import PRIORITIES
from tag_testkit.prometheus import PrometheusServer
from tagcore.config import Config
from tagcore.inprocess import InProcessTransport
from tagcore.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "tag-dashboard.json"
KEDA_RABBITMQ = DEPLOY / "keda" / "scaledobject-rabbitmq.yaml"
KEDA_PROMETHEUS = DEPLOY / "keda" / "scaledobject-prometheus.yaml"
TAG_FAMILIES = ("tag_jobs_total", "tag_job_seconds_bucket", "tag_audio_seconds_total", "tag_queue_depth",
                "tag_workers", "tag_gpu_memory_bytes", "tag_build_info")
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "rate", "irate", "increase", "histogram_quantile", "clamp_min",
    "label_values", "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "topk", "bottomk", "e",
}
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
            "gauge": ("",), "info": ("_info",), "unknown": ("",)}


def exported_names() -> set[str]:
    """Every sample name a TAG process can expose: a worker's or frontend's Metrics with the transport collector."""
    metrics = Metrics()
    transport = InProcessTransport(Config())
    metrics.follow(transport.client(), transport.catalog())
    return {family.name + suffix for family in metrics.registry.collect() for suffix in SUFFIXES[family.type]}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: what is left once strings, label matchers, ranges, grouping
    clauses, numbers, functions and keywords are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return {word for word in words if word not in PROMQL_WORDS and not word.startswith("$")}


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", ())]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(variable["query"]["query"])
    return queries


def as_promql(query: str) -> str:
    """A dashboard query as Prometheus itself runs it: Grafana's variables filled in, label_values(m, l) as m."""
    query = query.replace("$__rate_interval", "1m").replace("$backend", ".*")
    found = re.fullmatch(r"label_values\((\w+),\s*\w+\)", query)
    return found.group(1) if found else query


def test_metric_name_extraction_finds_names_and_skips_promql():
    expr = 'histogram_quantile(0.95, sum by (le, stage) (rate(tag_job_seconds_bucket{stage="x y"}[5m]))) / up'
    assert metric_names(expr) == {"tag_job_seconds_bucket", "up"}


def test_the_dashboard_loads_and_names_only_exported_metrics():
    queries = dashboard_queries()
    assert len(queries) >= len(TAG_FAMILIES)
    named = set().union(*(metric_names(as_promql(query)) for query in queries))
    exported = exported_names()
    assert named <= exported, f"the dashboard names metrics TAG does not export: {sorted(named - exported)}"
    missing = [family for family in TAG_FAMILIES if family not in named]
    assert not missing, f"the dashboard shows nothing of {missing}"


@pytest.mark.slow
def test_every_dashboard_query_is_valid_promql(tmp_path):
    prometheus = PrometheusServer(tmp_path, {})
    try:
        for query in dashboard_queries():
            prometheus.query(as_promql(query))  # a parse error is an AssertionError with Prometheus's message
    finally:
        prometheus.close()


def scaled_object(path: Path) -> dict:
    documents = list(yaml.safe_load_all(path.read_text()))
    found = [doc for doc in documents if doc["kind"] == "ScaledObject"]
    assert len(found) == 1 and found[0]["apiVersion"] == "keda.sh/v1alpha1"
    return found[0]


def test_the_keda_rabbitmq_example_adds_up_the_ten_priority_queues_of_the_backend():
    documents = list(yaml.safe_load_all(KEDA_RABBITMQ.read_text()))
    obj = scaled_object(KEDA_RABBITMQ)
    triggers = obj["spec"]["triggers"]
    settings = RabbitSettings()
    assert [t["metadata"]["queueName"] for t in triggers] == [
        settings.request_queue_for("make_an_audio", level) for level in range(PRIORITIES)]
    assert {t["type"] for t in triggers} == {"rabbitmq"}
    assert {t["metadata"]["mode"] for t in triggers} == {"QueueLength"}
    formula = obj["spec"]["advanced"]["scalingModifiers"]["formula"]
    assert sorted(re.findall(r"\w+", formula)) == sorted(t["name"] for t in triggers)
    assert set(re.sub(r"[\w\s]", "", formula)) == {"+"}, "the queues' counts are added, not maxed"
    auth_names = {doc["metadata"]["name"] for doc in documents if doc["kind"] == "TriggerAuthentication"}
    assert {t["authenticationRef"]["name"] for t in triggers} <= auth_names


def test_the_keda_prometheus_example_reads_the_exported_queue_depth_once_per_pool():
    obj = scaled_object(KEDA_PROMETHEUS)
    (trigger,) = obj["spec"]["triggers"]
    query = trigger["metadata"]["query"]
    assert metric_names(query) == {"tag_queue_depth"} <= exported_names()
    assert query.startswith("max("), "every frontend reports the same queues: summing them would over-count"
    assert float(trigger["metadata"]["threshold"]) > 0

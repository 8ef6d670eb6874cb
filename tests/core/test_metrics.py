"""tagcore.metrics: what a worker counts and times, what a frontend reads from its transport, GPU memory, lint,
and a real Prometheus scraping a worker's metrics server."""
import socket
import subprocess
import sys
import types

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tag_testkit.prometheus import PrometheusServer, promtool_problems, values
from tag_testkit.tone import ToneBackend
from tagcore.client import ResponseWaiter
from tagcore.config import Config
from tagcore.inprocess import InProcessTransport
from tagcore.messages import SoundRequest
from tagcore.metrics import Metrics
from tagcore.worker import GeneratorService, start_embedded_worker


def samples(metrics: Metrics) -> dict[tuple[str, frozenset], float]:
    """(sample name, labels) -> value of everything `metrics` exposes, parsed back from the text format."""
    text = metrics.exposition().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(table: dict, name: str, **labels: str) -> float:
    return table.get((name, frozenset(labels.items())), 0.0)


def run_jobs(requests: list[SoundRequest], cancel: tuple[str, ...] = ()) -> tuple[Metrics, InProcessTransport]:
    """Queue `requests` (cancelling the ids in `cancel` before a worker starts), serve them with the tone backend
    and a Metrics, wait for every answer."""
    config = Config(max_batch=8)
    transport = InProcessTransport(config)
    source = transport.job_source([ToneBackend.spec({})], prefetch=8)
    waiter = ResponseWaiter(transport.client())
    for request in requests:
        waiter.submit(request)
    for request_id in cancel:
        transport.cancelled.add(request_id)
    metrics = Metrics()
    service = GeneratorService({"tone": ToneBackend()}, source, config, metrics=metrics)
    thread, stop = start_embedded_worker(service)
    try:
        for request in requests:
            waiter.wait(request.request_id, 30)
    finally:
        stop.set()
        thread.join(5)
    return metrics, transport


def test_the_worker_counts_outcomes_audio_and_stage_times_of_what_it_answered():
    ok = [SoundRequest(prompt=f"p{i}", duration=1.5, backend="tone", seed=i) for i in range(3)]
    failing = SoundRequest(prompt="boom", duration=1.0, backend="tone", options={"fail": True})
    invalid = SoundRequest(prompt="too long", duration=500.0, backend="tone")
    cancelled = SoundRequest(prompt="never", duration=1.0, backend="sine")  # an alias counts under the backend
    metrics, _ = run_jobs([*ok, failing, invalid, cancelled], cancel=(cancelled.request_id,))
    table = samples(metrics)
    assert value(table, "tag_jobs_total", backend="tone", outcome="ok") == 3
    assert value(table, "tag_jobs_total", backend="tone", outcome="generation_failed") == 1
    assert value(table, "tag_jobs_total", backend="tone", outcome="cancelled") == 1
    assert value(table, "tag_jobs_total", backend="tone", outcome="invalid_request") == 1
    assert value(table, "tag_audio_seconds_total", backend="tone") == pytest.approx(4.5, abs=1e-3)
    timed = {stage: value(table, "tag_job_seconds_count", component="worker", backend="tone", stage=stage)
             for stage in ("queued", "generate", "total")}
    assert timed == {"queued": 6, "generate": 4, "total": 6}  # the invalid and the cancelled never generated
    total_sum = value(table, "tag_job_seconds_sum", component="worker", backend="tone", stage="total")
    parts = sum(value(table, "tag_job_seconds_sum", component="worker", backend="tone", stage=s)
                for s in ("queued", "generate"))
    assert total_sum == pytest.approx(parts, abs=1e-6) and total_sum > 0
    assert value(table, "tag_build_info", version=_version(), python=_python()) == 1
    assert promtool_problems(metrics.exposition()) == ""


def test_a_request_for_a_backend_the_worker_lacks_is_counted_without_a_label_of_its_own():
    stray = SoundRequest(prompt="x", duration=1.0, backend="made-up-" + "x" * 20)
    metrics, transport = run_jobs([])
    service = GeneratorService({"tone": ToneBackend()}, transport.job_source([ToneBackend.spec({})]), Config(),
                               metrics=metrics)

    class Job:
        request, cancelled = stray, False
        answers: list = []

        def respond(self, response):
            self.answers.append(response)

    service.process([Job()])  # type: ignore[list-item]
    assert Job.answers[0].error_code == "unknown_backend"
    table = samples(metrics)
    assert value(table, "tag_jobs_total", backend="unknown", outcome="unknown_backend") == 1
    assert not any(stray.backend in dict(labels).values() for _, labels in table)


def test_queue_depth_and_workers_come_from_the_in_process_transport():
    config = Config()
    transport = InProcessTransport(config)
    transport.job_source([ToneBackend.spec({})])  # a worker that has not taken anything yet
    transport.job_source([ToneBackend.spec({})])
    client = transport.client()
    for i in range(3):
        client.submit(SoundRequest(prompt=f"w{i}", duration=1.0, backend="tone", priority=i))
    assert client.queue_depths(["tone", "other"]) == {"tone": 3, "other": 0}
    metrics = Metrics()
    metrics.follow(client, transport.catalog())
    table = samples(metrics)
    assert value(table, "tag_queue_depth", backend="tone") == 3
    assert value(table, "tag_workers", backend="tone") == 2
    assert promtool_problems(metrics.exposition()) == ""
    metrics.follow(client, transport.catalog(), names=lambda: ["tone"])  # a frontend run again: replaced, not doubled
    assert value(samples(metrics), "tag_queue_depth", backend="tone") == 3


class FakeCuda:
    """What GpuMemoryCollector reads of torch.cuda, on a machine with two initialised devices."""

    def __init__(self, initialised: bool) -> None:
        self.initialised = initialised

    def is_initialized(self) -> bool:
        return self.initialised

    def device_count(self) -> int:
        return 2

    def memory_allocated(self, index: int) -> int:
        return 1000 * (index + 1)

    def memory_reserved(self, index: int) -> int:
        return 4096 * (index + 1)


def test_gpu_memory_is_read_from_torch_only_once_a_backend_initialised_cuda(monkeypatch):
    fake = types.ModuleType("torch")
    fake.cuda = FakeCuda(initialised=False)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", fake)
    metrics = Metrics()
    assert not [k for k in samples(metrics) if k[0] == "tag_gpu_memory_bytes"]
    fake.cuda.initialised = True  # type: ignore[attr-defined]
    table = samples(metrics)
    assert value(table, "tag_gpu_memory_bytes", device="cuda:1", kind="allocated") == 2000
    assert value(table, "tag_gpu_memory_bytes", device="cuda:0", kind="reserved") == 4096
    assert promtool_problems(metrics.exposition()) == ""


def test_metrics_never_import_torch():
    code = ("import sys, tagcore.metrics, tagcore.worker, tagcore.frontend; m = tagcore.metrics.Metrics(); "
            "m.exposition(); assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.slow
def test_prometheus_scrapes_a_workers_metrics_server(tmp_path):
    metrics, _ = run_jobs([SoundRequest(prompt=f"s{i}", duration=1.0, backend="tone") for i in range(4)])
    server = metrics.serve("127.0.0.1", 0)
    assert server.host == "127.0.0.1"
    try:
        prometheus = PrometheusServer(tmp_path, {"worker": [f"127.0.0.1:{server.port}"]})
        try:
            ok = prometheus.wait_for('tag_jobs_total{job="worker"}', lambda r: bool(r))
            assert values(ok, "outcome") == {"ok": 4.0}
            audio = prometheus.query('tag_audio_seconds_total{backend="tone"}')
            assert values(audio, "backend") == pytest.approx({"tone": 4.0})
            count = prometheus.query('sum(tag_job_seconds_count{component="worker",stage="total"})')
            assert float(count[0]["value"][1]) == 4
            assert values(prometheus.query("tag_build_info"), "version") == {_version(): 1.0}
            target = prometheus.api("targets")["activeTargets"][0]
            assert target["health"] == "up", target.get("lastError")
        finally:
            prometheus.close()
    finally:
        server.close()


def _version() -> str:
    from importlib.metadata import version
    return version("tag-audio")


def _python() -> str:
    import platform
    return platform.python_version()


def test_a_busy_metrics_port_stops_the_worker_before_any_model_loads(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from tagcore.cli import cli

    monkeypatch.setenv("TAG_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("TAG_BROKER_URL", "amqp://guest:guest@127.0.0.1:1/%2F")  # never reached
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["worker", "--transport", "rabbitmq", "-b", "tone", "--metrics-port",
                                          str(port)])
    assert result.exit_code == 2, result.output
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.output
    assert "loading tone" not in result.output

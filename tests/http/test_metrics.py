"""`GET /metrics` of the HTTP server: its job-record timings, the embedded worker's counters, queue depth and
workers, linted by promtool and scraped by a real Prometheus."""
import contextlib
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import tag_testkit.tone
from tag_http.frontend import HttpFrontend
from tag_testkit.prometheus import PrometheusServer, promtool_problems, values
from tagcore import plugins
from tagcore.config import Config
from tagcore.inprocess import InProcessTransport
from tagcore.worker import GeneratorService, served_specs, start_embedded_worker

KEY = "metrics-test-key-0123"


@contextlib.contextmanager
def server_with_embedded_worker() -> Iterator[tuple[str, HttpFrontend]]:
    """The server as `tag serve -b tone` wires it: the embedded worker records into the frontend's metrics."""
    if not plugins.get_plugin_manager().is_registered(tag_testkit.tone):
        plugins.register_plugin(tag_testkit.tone)
    config = Config(default_backend="tone", max_duration=20.0)
    transport = InProcessTransport(config)
    frontend = HttpFrontend(config, transport, {"port": 0, "backends": "tone", "api_key": KEY, "rate_limit": 0})
    backends = {"tone": plugins.backends().get("tone")()}
    service = GeneratorService(backends, transport.job_source(served_specs(backends)), config,
                               metrics=frontend.metrics)
    worker, worker_stop = start_embedded_worker(service)
    stop = threading.Event()
    thread = threading.Thread(target=frontend.run, args=(stop,), daemon=True)
    thread.start()
    assert frontend.ready.wait(15), "the HTTP server did not start"
    try:
        yield f"http://127.0.0.1:{frontend.port}", frontend
    finally:
        stop.set()
        thread.join(15)
        worker_stop.set()
        worker.join(5)


def finish_jobs(url: str, bodies: list[dict]) -> list[dict]:
    """Submit each body, wait for every job to end; the final statuses."""
    with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=30) as http:
        ids = [http.post("/v1/jobs", json=body).json()["id"] for body in bodies]
        done = []
        for job_id in ids:
            end = time.monotonic() + 60
            while (status := http.get(f"/v1/jobs/{job_id}").json())["state"] in ("queued", "running"):
                assert time.monotonic() < end, f"job {job_id} never finished"
                time.sleep(0.05)
            done.append(status)
        return done


def scrape(url: str) -> tuple[httpx.Response, dict[tuple[str, frozenset], float]]:
    answer = httpx.get(f"{url}/metrics", timeout=30)  # no API key: Prometheus scrapes like a health check
    table = {(s.name, frozenset(s.labels.items())): s.value
             for family in text_string_to_metric_families(answer.text) for s in family.samples}
    return answer, table


def test_metrics_show_the_api_records_and_the_embedded_worker():
    with server_with_embedded_worker() as (url, _):
        statuses = finish_jobs(url, [{"prompt": f"m{i}", "duration": 1.0} for i in range(3)]
                               + [{"prompt": "bad", "duration": 1.0, "options": {"fail": True}}])
        assert [s["state"] for s in statuses] == ["done", "done", "done", "failed"]
        answer, table = scrape(url)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    assert promtool_problems(answer.content) == ""

    def get(name: str, **labels: str) -> float:
        return table.get((name, frozenset(labels.items())), 0.0)

    assert get("tag_jobs_total", backend="tone", outcome="ok") == 3
    assert get("tag_jobs_total", backend="tone", outcome="generation_failed") == 1
    assert get("tag_audio_seconds_total", backend="tone") == pytest.approx(3.0)
    for stage, jobs in {"queued": 4, "generate": 4, "total": 4}.items():
        assert get("tag_job_seconds_count", component="api", backend="tone", stage=stage) == jobs, stage
    recorded = sum(s["finished_at"] - s["created_at"] for s in statuses)
    assert get("tag_job_seconds_sum", component="api", backend="tone", stage="total") == pytest.approx(recorded,
                                                                                                        abs=1e-3)
    assert get("tag_workers", backend="tone") == 1
    assert get("tag_queue_depth", backend="tone") == 0


def test_metrics_are_kept_out_of_the_openapi_schema():
    with server_with_embedded_worker() as (url, _):
        schema = httpx.get(f"{url}/openapi.json", timeout=30).json()
    assert "/metrics" not in schema["paths"]


@pytest.mark.slow
def test_prometheus_scrapes_tag_serve(tmp_path):
    with server_with_embedded_worker() as (url, _):
        finish_jobs(url, [{"prompt": f"p{i}", "duration": 2.0} for i in range(2)])
        prometheus = PrometheusServer(tmp_path, {"tag-serve": [url.removeprefix("http://")]})
        try:
            jobs = prometheus.wait_for('tag_jobs_total{job="tag-serve"}', lambda r: bool(r))
            assert values(jobs, "outcome") == {"ok": 2.0}
            workers = prometheus.query("tag_workers")
            assert values(workers, "backend") == {"tone": 1.0}
            total = prometheus.query('tag_job_seconds_count{component="api",stage="total"}')
            assert values(total, "backend") == {"tone": 2.0}
            # What the dashboard's latency panel asks: a quantile of the API's total time, within its buckets.
            p50 = prometheus.query('histogram_quantile(0.5, sum by (le) (tag_job_seconds_bucket{component="api",'
                                   'stage="total"}))')
            assert 0 < float(p50[0]["value"][1]) <= 60
        finally:
            prometheus.close()

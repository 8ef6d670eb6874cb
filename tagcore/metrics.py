"""Prometheus metrics of one TAG process: what a worker generated, how long jobs took, what waits in the queues.

Each process (a worker, the bot, the HTTP server, and the worker embedded in them) records into one `Metrics`,
which owns its own registry: two servers in one process (tests) never share counters, and an embedded worker's
counters appear on its frontend's `/metrics`. Values that live elsewhere (queue depths on the broker, the worker
count in the transport's catalog, GPU memory) are read when Prometheus scrapes, by collectors, never polled.

Names and labels (documented in the README, "Metrics and autoscaling"):
    tag_jobs_total{backend,outcome}        counter: jobs a worker answered; outcome ok, or the error code
                                            (cancelled, timed_out, generation_failed, invalid_request...)
    tag_job_seconds{component,backend,stage}  histogram; stage queued (until its batch started), generate, total;
                                            component worker (the worker's view) or api (the HTTP job records)
    tag_audio_seconds_total{backend}       counter: seconds of audio delivered
    tag_queue_depth{backend}               gauge: requests waiting for a worker (frontends read the broker)
    tag_workers{backend}                   gauge: live workers serving the backend (from the transport's catalog)
    tag_gpu_memory_bytes{device,kind}      gauge: CUDA memory allocated / reserved by this process's models
    tag_build_info{version,python}         1, with the version of TAG and Python in the labels
"""
from __future__ import annotations

import platform
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from wsgiref.simple_server import WSGIServer

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, Info, PlatformCollector,
                               ProcessCollector, generate_latest, start_http_server)
from prometheus_client.core import GaugeMetricFamily, Metric

from .catalog import BackendCatalog
from .messages import SoundRequest, SoundResponse
from .transport import TransportClient

CONTENT_TYPE = CONTENT_TYPE_LATEST
JOB_SECONDS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
"""From a fast tone or TTS clip (well under a second) to a long clip on a busy pool (minutes)."""
STAGES = ("queued", "generate", "total")


def tag_version() -> str:
    try:
        return version("tag-audio")
    except PackageNotFoundError:
        return "unknown"


class Metrics:
    """The metric families of one process, on a registry of its own (`registry`)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.jobs = Counter("tag_jobs", "Jobs answered by a worker, by outcome (ok or the error code).",
                            ("backend", "outcome"), registry=self.registry)
        self.job_seconds = Histogram(
            "tag_job_seconds", "Seconds a job spent waiting (queued), generating and in all (total), as seen by "
            "the worker or by the HTTP API's job records (component).", ("component", "backend", "stage"),
            buckets=JOB_SECONDS_BUCKETS, registry=self.registry)
        self.audio_seconds = Counter("tag_audio_seconds", "Seconds of audio delivered.", ("backend",),
                                     registry=self.registry)
        Info("tag_build", "TAG's version.", registry=self.registry).info(
            {"version": tag_version(), "python": platform.python_version()})
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.registry.register(GpuMemoryCollector())
        self._transport: TransportCollector | None = None

    def observe(self, component: str, backend: str, queued: float | None, generate: float | None,
                total: float | None) -> None:
        """One finished job's stage durations; a stage it never reached (None) is left out, and a negative
        span (clocks of two machines disagreeing) counts as 0."""
        for stage, seconds in zip(STAGES, (queued, generate, total)):
            if seconds is not None:
                self.job_seconds.labels(component, backend, stage).observe(max(0.0, seconds))

    def answered(self, backend: str, request: SoundRequest, response: SoundResponse,
                 generate: float | None) -> None:
        """A worker's answer to `request` for `backend`: counted by outcome, its audio added, its stages timed.
        `generate` is the seconds since its batch started generating (None when it was answered before that)."""
        self.jobs.labels(backend, "ok" if response.ok else (response.error_code or "error")).inc()
        if response.ok and response.audio is not None:
            self.audio_seconds.labels(backend).inc(response.audio.duration)
        total = max(0.0, time.time() - request.created_at)  # created_at: the frontend's clock
        queued = total if generate is None else total - generate
        self.observe("worker", backend, queued, generate, total)

    def follow(self, client: TransportClient, catalog: BackendCatalog,
               names: Callable[[], Sequence[str]] | None = None) -> None:
        """Report `tag_queue_depth` and `tag_workers` from this client and catalog (a frontend calls it once it
        has its client; a frontend run again replaces what its previous run followed)."""
        if self._transport is not None:
            self.registry.unregister(self._transport)
        self._transport = TransportCollector(client, catalog, names)
        self.registry.register(self._transport)

    def exposition(self) -> bytes:
        """The text Prometheus scrapes (content type `CONTENT_TYPE`)."""
        return generate_latest(self.registry)

    def serve(self, host: str, port: int) -> "MetricsServer":
        """prometheus_client's own HTTP server for this registry (`tag worker`/`tag bot --metrics-port`)."""
        server, thread = start_http_server(port, host, registry=self.registry)
        return MetricsServer(server, thread)


class MetricsServer:
    """A running metrics endpoint; `port` is the bound port (useful with port 0)."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server, self._thread = server, thread
        self.host, self.port = str(server.server_address[0]), int(server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class TransportCollector:
    """`tag_queue_depth` and `tag_workers` for every backend a frontend's catalog knows, read at scrape time."""

    def __init__(self, client: TransportClient, catalog: BackendCatalog,
                 names: Callable[[], Sequence[str]] | None = None) -> None:
        self.client = client
        self.catalog = catalog
        self.names = names or catalog.names

    def describe(self) -> Iterable[Metric]:
        return [_depth_family(), _workers_family()]

    def collect(self) -> Iterator[Metric]:
        names = list(self.names())
        depth = _depth_family()
        for name, waiting in sorted(self.client.queue_depths(names).items()):
            depth.add_metric([name], waiting)
        workers = _workers_family()
        for entry in self.catalog.entries():
            if entry.spec.name in names:
                workers.add_metric([entry.spec.name], entry.workers)
        yield depth
        yield workers


def _depth_family() -> GaugeMetricFamily:
    return GaugeMetricFamily("tag_queue_depth", "Requests waiting for a worker (all priorities), read from the "
                             "transport.", labels=["backend"])


def _workers_family() -> GaugeMetricFamily:
    return GaugeMetricFamily("tag_workers", "Live workers serving the backend.", labels=["backend"])


class GpuMemoryCollector:
    """`tag_gpu_memory_bytes` of this process: read from torch only if a backend already imported it and
    initialised CUDA (tagcore never imports torch; a scrape must not start CUDA either)."""

    def describe(self) -> Iterable[Metric]:
        return [_gpu_family()]

    def collect(self) -> Iterator[Metric]:
        family = _gpu_family()
        torch = sys.modules.get("torch")
        cuda = getattr(torch, "cuda", None)
        if cuda is not None and cuda.is_initialized():
            for index in range(cuda.device_count()):
                family.add_metric([f"cuda:{index}", "allocated"], cuda.memory_allocated(index))
                family.add_metric([f"cuda:{index}", "reserved"], cuda.memory_reserved(index))
        yield family


def _gpu_family() -> GaugeMetricFamily:
    return GaugeMetricFamily("tag_gpu_memory_bytes", "CUDA memory held by this process's models: allocated "
                             "tensors, and reserved by torch's caching allocator (kind).", labels=["device", "kind"])

"""`GET /metrics` of `tag serve`: the server's Prometheus metrics, and the job-record timings behind them.

The API's `tag_job_seconds{component="api"}` comes from its own job records (created, started, finished), so it is
what a client of this server waited, including the broker and the result upload; workers time their own view
(`component="worker"`). Queue depths and worker counts are read from the transport at scrape time. The route needs
no API key, like /v1/health: it reveals counts and timings, never prompts or results (block it at the proxy when
the server faces the internet and Prometheus does not scrape through it).
"""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from tagcore.metrics import CONTENT_TYPE, Metrics
from tagcore.messages import SoundResponse
from tagcore.recent import RecentIds
from tagcore.transport import Event, TransportClient

from .catalog import Catalog
from .jobs import JobStore

TIMED_STATES = ("done", "failed")
"""Jobs that ended with a worker's answer; a job cancelled here ended by the client's choice, not the pool's."""


def metrics_router(metrics: Metrics) -> APIRouter:
    """The `/metrics` route (kept out of the OpenAPI schema: it is for Prometheus, not for API clients)."""
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    def scrape() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    return router


class RecordTimer:
    """A transport listener, added after the job store's: once the store folded a response into its record,
    the record's stage durations go into `tag_job_seconds{component="api"}` (each job once)."""

    def __init__(self, metrics: Metrics, store: JobStore) -> None:
        self.metrics = metrics
        self.store = store
        self._timed = RecentIds()

    def on_event(self, event: Event) -> None:
        if not isinstance(event, SoundResponse) or event.request_id in self._timed:
            return
        record = self.store.get(event.request_id)
        if record is None:
            return
        snap, _ = self.store.snapshot(record)
        if snap.state not in TIMED_STATES or snap.finished_at is None:
            return
        self._timed.add(snap.id)
        started = snap.started_at if snap.started_at is not None else snap.finished_at
        generate = snap.finished_at - snap.started_at if snap.started_at is not None else None
        self.metrics.observe("api", snap.backend, started - snap.created_at, generate,
                             snap.finished_at - snap.created_at)


def instrument(metrics: Metrics, client: TransportClient, store: JobStore, catalog: Catalog) -> None:
    """Wire the server's metrics to its client (call after `client.add_listener(store.on_event)`): record
    timings, and queue depths and worker counts of the offered backends."""
    client.add_listener(RecordTimer(metrics, store).on_event)
    metrics.follow(client, catalog.backends, names=catalog.names)

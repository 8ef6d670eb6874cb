"""The in-process transport: frontends and workers in one process, no broker (the embedded default)."""
from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Sequence

from . import hookspecs
from .catalog import BackendCatalog
from .recent import RecentIds
from .config import Config
from .errors import TagError
from .messages import ProgressEvent, SoundRequest, SoundResponse
from .spec import BackendSpec
from .transport import Job, JobSource, Listener, Transport, TransportClient


class _InProcessJob(Job):
    def __init__(self, transport: "InProcessTransport", request: SoundRequest) -> None:
        self.transport = transport
        self.request = request

    @property
    def cancelled(self) -> bool:
        return self.request.request_id in self.transport.cancelled

    def progress(self, event: ProgressEvent) -> None:
        self.transport.dispatch(event)

    def respond(self, response: SoundResponse) -> None:
        self.transport.dispatch(response)

    def release(self) -> None:
        with self.transport.arrived:
            self.transport.enqueue(self.request)
            self.transport.arrived.notify_all()


class _InProcessSource(JobSource):
    def __init__(self, transport: "InProcessTransport", backends: Sequence[BackendSpec]) -> None:
        self.transport = transport
        self.names = [spec.name for spec in backends]
        self.queues = [transport.queue_for(name) for name in self.names]
        self._turn = 0

    def next_jobs(self, max_jobs: int, timeout: float) -> list[Job]:
        deadline = time.monotonic() + timeout
        with self.transport.arrived:
            while True:
                jobs = self._drain(max_jobs)
                remaining = deadline - time.monotonic()
                if jobs or remaining <= 0:
                    return jobs
                self.transport.arrived.wait(remaining)

    def _drain(self, max_jobs: int) -> list[Job]:
        jobs: list[Job] = []
        for offset in range(len(self.queues)):  # rotate so one busy backend cannot starve another
            q = self.queues[(self._turn + offset) % len(self.queues)]
            while len(jobs) < max_jobs:
                try:
                    jobs.append(_InProcessJob(self.transport, q.get_nowait()[2]))
                except queue.Empty:
                    break
        self._turn += 1
        return jobs

    def close(self) -> None:
        self.transport.detach(self)


class _InProcessClient(TransportClient):
    def __init__(self, transport: "InProcessTransport") -> None:
        self.transport = transport
        self.listeners: list[Listener] = []

    def submit(self, request: SoundRequest) -> None:
        self.transport.submit(self, request)

    def cancel(self, request_id: str) -> None:
        self.transport.cancelled.add(request_id)

    def queue_depths(self, backends: Sequence[str]) -> dict[str, int]:
        return self.transport.queue_depths(backends)

    def add_listener(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def close(self) -> None:
        self.transport.forget(self)


class InProcessTransport(Transport):
    """Thread-safe queues per backend; responses go back to the client that submitted the request."""

    name = "inprocess"
    aliases = ("local",)
    description = "Requests and workers in one process (no broker)."
    embedded = True

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self._lock = threading.Lock()
        self._queues: dict[str, queue.PriorityQueue[tuple[int, int, SoundRequest]]] = {}
        self._order = itertools.count()
        self._sources: list[_InProcessSource] = []
        self._owners: dict[str, _InProcessClient] = {}
        self._clients: list[_InProcessClient] = []
        self.arrived = threading.Condition()
        self.cancelled = RecentIds()
        self._catalog = BackendCatalog()

    def queue_for(self, backend: str) -> "queue.PriorityQueue[tuple[int, int, SoundRequest]]":
        """The backend's queue: highest priority first, then first come first served."""
        with self._lock:
            return self._queues.setdefault(backend, queue.PriorityQueue())

    def enqueue(self, request: SoundRequest) -> int:
        """Queue `request` by priority; the number of requests waiting for its backend."""
        q = self.queue_for(request.backend)
        q.put((-request.priority, next(self._order), request))
        return q.qsize()

    def client(self, *, name: str | None = None) -> TransportClient:
        client = _InProcessClient(self)
        with self._lock:
            self._clients.append(client)
        return client

    def job_source(self, backends: Sequence[BackendSpec], *, prefetch: int = 1) -> JobSource:
        source = _InProcessSource(self, backends)
        with self._lock:
            self._sources.append(source)
        for spec in backends:  # announced directly: the worker is in this process
            self._catalog.announce(spec, worker="in-process")
            self._catalog.set_workers(spec.name, self.workers_for(spec.name))
        return source

    def detach(self, source: _InProcessSource) -> None:
        with self._lock:
            if source in self._sources:
                self._sources.remove(source)
        for name in source.names:
            self._catalog.set_workers(name, self.workers_for(name))

    def workers_for(self, backend: str) -> int:
        """How many open job sources (embedded workers) serve `backend`."""
        with self._lock:
            return sum(1 for s in self._sources if backend in s.names)

    def queue_depths(self, backends: Sequence[str]) -> dict[str, int]:
        """Requests waiting (not yet taken by a worker) per backend; a backend never asked for waits none."""
        with self._lock:
            return {name: q.qsize() if (q := self._queues.get(name)) is not None else 0 for name in backends}

    def catalog(self) -> BackendCatalog:
        return self._catalog

    def forget(self, client: _InProcessClient) -> None:
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)

    def served_backends(self) -> set[str]:
        with self._lock:
            return {name for s in self._sources for name, q in self._queues.items() if q in s.queues}

    def submit(self, client: _InProcessClient, request: SoundRequest) -> None:
        request.backend = self._catalog.canonical(request.backend)
        if request.backend not in self.served_backends():
            served = ", ".join(sorted(self.served_backends())) or "none"
            error = TagError(f"no worker in this process serves backend {request.backend!r} (served: {served})",
                             code="no_worker")
            client_response = SoundResponse.failure(request, error)
            for listener in list(client.listeners):
                listener(client_response)
            return
        with self._lock:
            self._owners[request.request_id] = client
        with self.arrived:
            waiting = self.enqueue(request)
            self.arrived.notify_all()
        self._deliver(client, ProgressEvent.about(request, "queued", position=waiting))

    def dispatch(self, event: ProgressEvent | SoundResponse) -> None:
        with self._lock:
            if isinstance(event, SoundResponse):
                client = self._owners.pop(event.request_id, None)
            else:
                client = self._owners.get(event.request_id)
        if client is not None:
            self._deliver(client, event)

    @staticmethod
    def _deliver(client: _InProcessClient, event: ProgressEvent | SoundResponse) -> None:
        for listener in list(client.listeners):
            listener(event)


@hookspecs.hookimpl
def register_transports(register) -> None:
    register(InProcessTransport)

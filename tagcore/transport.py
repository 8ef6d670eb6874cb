"""How requests travel from frontends to workers and answers travel back.

A transport has two sides. Frontends use a `TransportClient`: `submit` a request, receive progress events and
the response through listeners. Workers use a `JobSource`: take jobs for the backends they serve, report
progress, and `respond` exactly once per job (the transport acknowledges the request only after the response is
safely handed on). The generator service is written against these interfaces only.

Workers also announce what they serve: a job source publishes the `BackendSpec` of each of its backends, and a
transport's `catalog()` follows those announcements for its clients, so frontends need no backend code.
"""
from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import ClassVar

from .catalog import BackendCatalog
from .config import Config
from .messages import ProgressEvent, SoundRequest, SoundResponse
from .spec import BackendSpec

Event = ProgressEvent | SoundResponse
Listener = Callable[[Event], None]


class Job(abc.ABC):
    """One request taken by a worker; finish it with `respond` or hand it back with `release`."""

    request: SoundRequest
    redelivered: bool = False
    """True when an earlier worker took this request and died before answering."""

    @property
    def cancelled(self) -> bool:
        """True once the requester cancelled this request (checked before and during generation)."""
        return False

    @abc.abstractmethod
    def progress(self, event: ProgressEvent) -> None:
        """Forward a progress event to the requester (best effort, never blocks generation for long)."""

    @abc.abstractmethod
    def respond(self, response: SoundResponse) -> None:
        """Deliver the response, then acknowledge the request: the job is done once this returns."""

    @abc.abstractmethod
    def release(self) -> None:
        """Give the request back unanswered (worker shutting down) so another worker can take it."""


class JobSource(abc.ABC):
    """The worker's side of a transport."""

    @abc.abstractmethod
    def next_jobs(self, max_jobs: int, timeout: float) -> list[Job]:
        """Wait up to `timeout` seconds for a first job, then return it with up to `max_jobs - 1` more that are
        already waiting (never waiting for them). An empty list means nothing arrived in time."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop taking jobs; unanswered jobs taken earlier go back to the queue."""


class TransportClient(abc.ABC):
    """A frontend's side of a transport."""

    @abc.abstractmethod
    def submit(self, request: SoundRequest) -> None:
        """Send a request. Returns once the transport accepted it (it will be answered, possibly with an
        error response); raises TagError if it could not be accepted at all."""

    @abc.abstractmethod
    def cancel(self, request_id: str) -> None:
        """Ask the workers to drop the request if it waits, or to stop it between steps if it runs; the answer
        is then an error response with code `cancelled` (or the result, if it finished first)."""

    @abc.abstractmethod
    def add_listener(self, listener: Listener) -> None:
        """Call `listener` (from a transport thread) for every progress event and response for this client."""

    def queue_depths(self, backends: Sequence[str]) -> dict[str, int]:
        """Requests waiting for a worker, per backend (the `tag_queue_depth` metric; autoscalers read it). Cheap
        enough to call on every metrics scrape (a broker transport caches it for a few seconds); a backend whose
        depth cannot be read now (broker unreachable) is left out. The default, for transports that cannot
        tell: nothing."""
        return {}

    def outage(self) -> str | None:
        """Why requests cannot reach the workers now (say, the broker is unreachable and the client keeps
        reconnecting), else None. Requests submitted meanwhile wait; health checks report it."""
        return None

    @abc.abstractmethod
    def close(self) -> None:
        """Disconnect; pending requests stay queued for a client that reconnects under the same name."""


class Transport(abc.ABC):
    """A registered transport: a factory for clients and job sources that talk to each other."""

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    embedded: ClassVar[bool] = False
    """True when workers must run inside the same process as the clients (the in-process transport)."""

    def __init__(self, config: Config) -> None:
        self.config = config

    @abc.abstractmethod
    def client(self, *, name: str | None = None) -> TransportClient:
        """A client. With a `name` (e.g. "telegram") responses are kept for that name across restarts; without
        one they reach this process only (a CLI call waiting for its own answer)."""

    @abc.abstractmethod
    def job_source(self, backends: Sequence[BackendSpec], *, prefetch: int = 1) -> JobSource:
        """A source of jobs for exactly these backends, holding at most `prefetch` unanswered jobs. It announces
        the specs to clients (see `catalog`) for as long as it is open."""

    @abc.abstractmethod
    def catalog(self) -> BackendCatalog:
        """The backends workers announced on this transport and whether a live worker serves each, kept up to
        date while the transport is open. Waits (a bounded time) for what was announced before it was called."""

    def failure(self) -> str | None:
        """Why this transport can no longer move messages (a connection thread died of a bug), else None; a
        process that sees one must exit non-zero so that its supervisor restarts it."""
        return None

    def close(self) -> None:
        """Release connections held by the transport itself."""

"""How many requests wait for a worker: a backend's ten priority queues, counted on the broker for `/metrics` and
for the position a "queued" event reports.

A passive declare answers with the queue's ready messages (those no worker has taken yet). It runs on the client's
I/O thread but on a channel of its own, because the broker closes a channel that declares a missing queue (404) and
the client's publishing channel must never pay for that. Counts are cached for `CACHE_S` seconds, so however often
and from however many scrapers `/metrics` is read, the broker sees at most ten declares per backend per period.

A submit asks the broker nothing but its publish: the position of a new request is counted from `Levels`, the
per-priority counts and the worker count of its backend taken at most `LEVELS_S` s ago, plus the requests this
client published into those queues since (approximate, like any position in a queue others take from).
"""
from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from .iothread import NotConnected
from .settings import RabbitSettings
from .topology import PRIORITIES

CACHE_S = 5.0
"""Seconds a count is reused: shorter than any sensible scrape interval, long enough to protect the broker."""
READ_TIMEOUT_S = 2.0
"""Longest a scrape waits for the broker; a backend not counted in time is left out of that scrape."""
LEVELS_S = 1.0
"""Seconds the counts behind "queued" positions are reused: eleven passive declares per backend and second at
most, however many requests are submitted."""


@dataclass
class Levels:
    """A backend's ready requests per priority and its workers when counted, plus this client's publishes since."""

    at: float
    ready: list[int]
    workers: int
    added: list[int] = field(default_factory=lambda: [0] * PRIORITIES)

    def place(self, priority: int) -> int:
        """Count one request just published at `priority`; its position: the requests at its priority or above."""
        self.added[priority] += 1
        return sum(self.ready[level] + self.added[level] for level in range(priority, PRIORITIES))


class DepthUnreadable(Exception):
    """The broker refused to show a queue (say, permissions): the scrape leaves that backend out."""


class QueueDepths:
    """Cached ready-message counts per backend; `read` from any thread, `count` runs on the I/O thread."""

    def __init__(self, settings: RabbitSettings, connection: Callable[[], BlockingConnection | None],
                 call: Callable[[Callable[[], Any]], "concurrent.futures.Future[Any]"]) -> None:
        self.settings = settings
        self._connection = connection
        self._call = call
        self._channel: BlockingChannel | None = None
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, int]] = {}
        self._levels: dict[str, Levels] = {}
        """For "queued" positions (I/O thread only)."""

    def read(self, backends: Sequence[str]) -> dict[str, int]:
        """Waiting requests per backend; backends the broker could not be asked about now are left out."""
        now = time.monotonic()
        with self._lock:
            known = {name: count for name, (at, count) in self._cache.items() if now - at < CACHE_S}
        missing = [name for name in backends if name not in known]
        if missing:
            future = self._call(lambda: self.count(missing))
            try:
                counted: dict[str, int] = future.result(READ_TIMEOUT_S)
            except (concurrent.futures.TimeoutError, NotConnected, DepthUnreadable):
                future.cancel()  # still queued for a connection that is down: drop it
                counted = {}
            with self._lock:
                self._cache.update({name: (now, count) for name, count in counted.items()})
            known.update(counted)
        return {name: known[name] for name in backends if name in known}

    def count(self, backends: Sequence[str]) -> dict[str, int]:
        """On the I/O thread: the ready messages of every priority queue of each backend, summed."""
        return {name: sum(self._ready(self.settings.request_queue_for(name, level)) for level in range(PRIORITIES))
                for name in backends}

    def levels(self, backend: str) -> Levels:
        """On the I/O thread: the counts behind "queued" positions as last taken (all zero, and stale, when
        never taken); `recount_stale` refreshes them after the publishes that use them went out."""
        levels = self._levels.get(backend)
        if levels is None:
            levels = self._levels[backend] = Levels(float("-inf"), [0] * PRIORITIES, 0)
        return levels

    def recount_stale(self, backend: str) -> None:
        """On the I/O thread: count `backend`'s queues again if its counts are older than LEVELS_S. A count that
        fails keeps the old one until the next period: a position is not worth an error or a retry storm."""
        levels = self.levels(backend)
        if time.monotonic() - levels.at < LEVELS_S:
            return
        try:
            ready = [self._ready(self.settings.request_queue_for(backend, level)) for level in range(PRIORITIES)]
            workers = self._counts(self.settings.presence_queue_for(backend))[1]
        except (NotConnected, DepthUnreadable):
            levels.at = time.monotonic()
            return
        self.seed(backend, ready, workers)

    def seed(self, backend: str, ready: list[int], workers: int) -> None:
        """Counts just learned (say, from the declarations of the backend's queues), fresh from now."""
        self._levels[backend] = Levels(time.monotonic(), ready, workers)

    def forget_levels(self) -> None:
        """A new connection: the queues may have changed while it was away."""
        self._levels.clear()

    def _ready(self, queue: str) -> int:
        return self._counts(queue)[0]

    def _counts(self, queue: str) -> tuple[int, int]:
        """(ready messages, consumers) of `queue`; (0, 0) when it does not exist."""
        connection = self._connection()
        if connection is None:
            raise NotConnected("no connection")
        channel = self._channel
        if channel is None or not channel.is_open or channel.connection is not connection:
            channel = self._channel = connection.channel()
        try:
            ok = channel.queue_declare(queue, passive=True).method
            return int(ok.message_count), int(ok.consumer_count)
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._channel = None
            if exc.reply_code == 404:  # nobody asked for this priority yet: nothing waits there
                return 0, 0
            # Not a lost connection (which would make the I/O thread reconnect): this queue alone is unreadable.
            raise DepthUnreadable(f"{queue}: {exc.reply_code} {exc.reply_text}") from None


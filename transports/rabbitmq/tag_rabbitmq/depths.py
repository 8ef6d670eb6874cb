"""How many requests wait for a worker: a backend's ten priority queues, counted on the broker for `/metrics`.

A passive declare answers with the queue's ready messages (those no worker has taken yet). It runs on the client's
I/O thread but on a channel of its own, because the broker closes a channel that declares a missing queue (404) and
the client's publishing channel must never pay for that. Counts are cached for `CACHE_S` seconds, so however often
and from however many scrapers `/metrics` is read, the broker sees at most ten declares per backend per period.
"""
from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Sequence
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

    def _ready(self, queue: str) -> int:
        connection = self._connection()
        if connection is None:
            raise NotConnected("no connection")
        channel = self._channel
        if channel is None or not channel.is_open or channel.connection is not connection:
            channel = self._channel = connection.channel()
        try:
            return int(channel.queue_declare(queue, passive=True).method.message_count)
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._channel = None
            if exc.reply_code == 404:  # nobody asked for this priority yet: nothing waits there
                return 0
            # Not a lost connection (which would make the I/O thread reconnect): this queue alone is unreadable.
            raise DepthUnreadable(f"{queue}: {exc.reply_code} {exc.reply_text}") from None


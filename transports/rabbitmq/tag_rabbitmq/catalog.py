"""Following what workers announce: a frontend's live `BackendCatalog` over RabbitMQ.

Workers publish the JSON spec of every backend they serve to the catalog stream (`Catalog`) each time they
connect. A follower reads that stream from its first message and keeps reading (after a reconnect it resumes
behind the last message it read), so a frontend learns at start what was announced before it ran and later sees
workers that start after it; among several announcements for a backend the newest wins, and only a difference
announced while the frontend runs is logged (older ones are history: a worker reloaded with other weights). Whether a backend is available right now is not in the stream (a worker may have died
since): the follower asks the broker every `catalog_refresh` seconds how many consumers its request queue has.

To know when it has read everything announced before it started, the follower publishes a marker of its own into
the stream and counts itself synchronised when that marker comes back.
"""
from __future__ import annotations

import logging
import threading
import uuid

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from tagcore.catalog import BackendCatalog
from tagcore.errors import MessageError
from tagcore.spec import BackendSpec

from .iothread import IOThread
from .settings import RabbitSettings
from .topology import PERSISTENT, declare_catalog_queue

log = logging.getLogger(__name__)
SPEC_TYPE = "backend-spec"
MARKER_TYPE = "catalog-marker"
WORKER_HEADER = "x-tag-worker"


def announce(channel: BlockingChannel, settings: RabbitSettings, specs: list[BackendSpec], worker: str) -> None:
    """Publish `specs` to the catalog stream (`channel` in confirm mode: returns once the broker has them)."""
    declare_catalog_queue(channel, settings)
    for spec in specs:
        channel.basic_publish("", settings.catalog_queue, spec.to_json().encode(), pika.BasicProperties(
            delivery_mode=PERSISTENT, type=SPEC_TYPE, content_type="application/json",
            headers={WORKER_HEADER: worker}))


class CatalogFollower(IOThread):
    """Keeps `catalog` up to date from the catalog stream and the request queues' consumer counts."""

    outage_level = logging.INFO  # the client that submits reports an outage itself, once

    def __init__(self, params: pika.ConnectionParameters, settings: RabbitSettings, catalog: BackendCatalog) -> None:
        IOThread.__init__(self, params, name="tag-rabbitmq-catalog-io", max_delay=settings.reconnect_max_delay)
        self.settings = settings
        self.catalog = catalog
        self.synced = threading.Event()
        """Set once everything announced before this follower started has been read."""
        self._marker = uuid.uuid4().hex
        self._next_offset: int | str = "first"
        """Where reading resumes after a reconnect: the stream offset after the last message read."""
        self._probe: BlockingChannel | None = None
        self.start()

    # -- I/O thread ----------------------------------------------------------------------------------------
    def setup(self, connection: BlockingConnection) -> None:
        channel = connection.channel()
        declare_catalog_queue(channel, self.settings)
        channel.basic_qos(prefetch_count=100)  # a stream consumer needs a prefetch; acks only grant credit
        channel.basic_consume(self.settings.catalog_queue, self._on_message,
                              arguments={"x-stream-offset": self._next_offset})
        if not self.synced.is_set():
            channel.basic_publish("", self.settings.catalog_queue, b"", pika.BasicProperties(
                type=MARKER_TYPE, correlation_id=self._marker))
        self._probe = None
        generation = self.generation
        connection.call_later(self.settings.catalog_refresh, lambda: self._refresh(generation))

    def on_disconnect(self) -> None:
        self._probe = None

    def _on_message(self, channel: BlockingChannel, method, properties: pika.BasicProperties, body: bytes) -> None:
        channel.basic_ack(method.delivery_tag)
        offset = (properties.headers or {}).get("x-stream-offset")
        if isinstance(offset, int):
            self._next_offset = offset + 1
        if properties.type == MARKER_TYPE:
            if properties.correlation_id == self._marker:
                self.synced.set()
            return
        if properties.type != SPEC_TYPE:
            return
        worker = str((properties.headers or {}).get(WORKER_HEADER, ""))[:200]
        try:
            spec = BackendSpec.from_json(body)
        except MessageError as error:
            log.warning("ignored a malformed backend announcement from %s: %s", worker or "an unknown worker",
                        error.message)
            return
        # Older announcements read while catching up are history (a worker since reloaded), not a disagreement.
        self.catalog.announce(spec, worker, warn=self.synced.is_set())
        self._check(spec.name)

    def _refresh(self, generation: int) -> None:
        if generation != self.generation or self._connection is None:
            return
        for name in self.catalog.names():
            self._check(name)
        self._connection.call_later(self.settings.catalog_refresh, lambda: self._refresh(generation))

    def _check(self, name: str) -> None:
        """Available = the backend's presence queue has a consumer (a live worker); a missing queue has none."""
        if self._connection is None:
            return
        try:
            if self._probe is None or not self._probe.is_open:
                self._probe = self._connection.channel()
            ok = self._probe.queue_declare(self.settings.presence_queue_for(name), durable=True, passive=True)
            self.catalog.set_workers(name, ok.method.consumer_count)
        except pika.exceptions.ChannelClosedByBroker:  # 404: no worker ever declared it
            self._probe = None
            self.catalog.set_workers(name, 0)

    def close(self) -> None:
        """Stop following (the catalog keeps what it learned)."""
        self.stop()

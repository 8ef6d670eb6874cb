"""The frontend side: submit requests to the backend's request queue and receive this client's answers.

A client named "telegram" reads the durable queue `ResponseQueue.telegram`: answers that arrive while the bot
is down wait there, and an answer is acknowledged only after the listeners handled it (one that a listener
could not keep is returned to the queue and redelivered, to this or another consumer of the same name). An
unnamed client (a CLI call) reads a private queue `ResponseQueue.private.<random>` that it alone consumes (exclusive consumer); it is
durable with an expiry instead of exclusive so that an answer survives a broker restart mid-request.

`submit` returns once the broker confirmed the request; until then it is kept and republished after a
reconnect. Duplicate answers (a request redelivered after a worker crash) reach the listeners only once.
"""
from __future__ import annotations

import collections
import logging
import queue
import threading
import time
import uuid
from collections.abc import Sequence

import pika
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from tagcore.errors import MessageError, TagError
from tagcore.messages import ProgressEvent, SoundRequest, SoundResponse, decode, encode
from tagcore.transport import Event, Listener, TransportClient

from .depths import QueueDepths
from .iothread import IOThread, NotConnected
from .settings import RabbitSettings
from .topology import (PERSISTENT, PRIORITIES, dead_letter, declare_control_exchange, declare_dead_letter_queue,
                       declare_request_queue, declare_response_queue, reason_of, wake_note)

log = logging.getLogger(__name__)
SEEN_MEMORY = 100_000
REQUEUE_PAUSE = 1.0
"""Seconds before an answer no listener could keep is returned to the queue (and soon redelivered)."""


class _Pending:
    def __init__(self, request: SoundRequest, body: bytes, backend: str) -> None:
        self.request = request
        self.body = body
        self.backend = backend
        self.confirmed = threading.Event()


class RabbitClient(TransportClient, IOThread):
    def __init__(self, params: pika.ConnectionParameters, settings: RabbitSettings, *, name: str | None) -> None:
        IOThread.__init__(self, params, name=f"tag-rabbitmq-client-io-{name or 'private'}",
                          max_delay=settings.reconnect_max_delay)
        self.settings = settings
        self.name = name
        if name:
            self.reply_queue = settings.named_response_queue(name)
            self._expiry: float | None = None
        else:
            self.reply_queue = f"{settings.response_queue}.private.{uuid.uuid4().hex}"
            self._expiry = settings.private_queue_expiry
            self.outage_level = logging.INFO  # a CLI call reports an outage itself, as its one error line
        self.listeners: list[Listener] = []
        self._consuming = False
        self._consumer_generation = -1
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._channel: BlockingChannel | None = None
        self._declared: set[str] = set()
        self._events: queue.Queue[tuple[Event, int | None, int] | None] = queue.Queue()
        self._dispatcher = threading.Thread(target=self._dispatch, name="tag-rabbitmq-client-dispatch",
                                            daemon=True)
        self._dispatcher.start()
        self._depths = QueueDepths(settings, lambda: self._connection, self.call)
        self.start()

    # -- I/O thread ----------------------------------------------------------------------------------------
    def setup(self, connection: BlockingConnection) -> None:
        channel = connection.channel()
        channel.confirm_delivery()
        declare_dead_letter_queue(channel, self.settings)
        declare_response_queue(channel, self.reply_queue, expiry=self._expiry)
        declare_control_exchange(channel, self.settings)
        channel.basic_qos(prefetch_count=self.settings.client_prefetch)
        self._channel = channel
        self._declared = set()
        if self._consuming:
            self._consume()
        with self._lock:
            unconfirmed = list(self._pending.values())
        for pending in unconfirmed:  # accepted by submit but never confirmed by the old connection
            self._publish(pending.request.request_id)

    def on_disconnect(self) -> None:
        self._channel = None

    def _consume(self) -> None:
        if self._channel is None or self._consumer_generation == self.generation:
            return
        self._consumer_generation = self.generation
        self._channel.basic_consume(self.reply_queue, self._on_message, exclusive=self._expiry is not None)

    def _on_message(self, channel: BlockingChannel, method, properties, body: bytes) -> None:
        try:
            event = decode(body)
            if isinstance(event, SoundRequest):
                raise MessageError("a request arrived in a response queue")
        except Exception as error:  # whatever is wrong with one message costs that message, never the consumer
            reason = reason_of(error)
            log.warning("dead-lettered a malformed message from %s: %s", self.reply_queue, reason)
            dead_letter(channel, self.settings, body, reason, source=self.reply_queue,
                        by=f"client {self.name or 'private'}")
            channel.basic_ack(method.delivery_tag)
            return
        self._events.put((event, method.delivery_tag, self.generation))

    def _publish(self, request_id: str) -> None:
        with self._lock:
            pending = self._pending.get(request_id)
        if pending is None or pending.confirmed.is_set() or self._channel is None:
            return
        channel = self._channel
        request = pending.request
        priority = min(PRIORITIES - 1, max(0, request.priority))
        queue_name = self.settings.request_queue_for(pending.backend, priority)
        presence = self.settings.presence_queue_for(pending.backend)
        if pending.backend not in self._declared:  # requests wait for a worker that has not started yet
            for level in range(PRIORITIES):
                declare_request_queue(channel, self.settings, pending.backend, level)
            channel.queue_declare(presence, durable=True)
            self._declared.add(pending.backend)
        channel.basic_publish("", queue_name, pending.body, pika.BasicProperties(
            delivery_mode=PERSISTENT, correlation_id=request_id, reply_to=self.reply_queue, type="request"))
        with self._lock:
            self._pending.pop(request_id, None)
        pending.confirmed.set()
        channel.basic_publish(self.settings.control_exchange, "", b"", wake_note(queue_name))
        ahead = sum(channel.queue_declare(self.settings.request_queue_for(pending.backend, level),
                                          passive=True).method.message_count
                    for level in range(priority, PRIORITIES))
        workers = channel.queue_declare(presence, passive=True).method.consumer_count
        note = "" if workers else f"no worker is serving {request.backend!r} right now"
        self._events.put((ProgressEvent.about(request, "queued", position=max(1, ahead), message=note),
                          None, self.generation))

    # -- dispatcher thread: listeners may be slow (uploads), so they never run on the I/O thread ----------------
    def _dispatch(self) -> None:
        while True:
            item = self._events.get()
            if item is None:
                return
            try:
                self._dispatch_one(*item)
            except Exception:  # one event must never stop the delivery of the next ones
                log.exception("could not dispatch a %s event", type(item[0]).__name__)

    def _dispatch_one(self, event: Event, tag: int | None, generation: int) -> None:
        if isinstance(event, SoundResponse):
            with self._lock:
                duplicate = event.request_id in self._seen
                self._seen[event.request_id] = None
                while len(self._seen) > SEEN_MEMORY:
                    self._seen.popitem(last=False)
            if duplicate:
                log.info("dropped a duplicate response for %s", event.request_id)
            elif not self._notify(event) and tag is not None:
                self._requeue(event, tag, generation)
                return
        else:
            self._notify(event)
        if tag is not None:
            self._ack(tag, generation)

    def _notify(self, event: Event) -> bool:
        """Hand `event` to every listener; False when one failed (it could not keep the event)."""
        handled = True
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:
                handled = False
                log.exception("a listener failed on %s %s", event.kind, event.request_id)
        return handled

    def _requeue(self, response: SoundResponse, tag: int, generation: int) -> None:
        """An answer a listener could not keep (its store is down) goes back to the queue, not lost: after a
        pause, so a lasting outage is no hot loop, and forgotten as seen, so its redelivery is handled."""
        with self._lock:
            self._seen.pop(response.request_id, None)
        log.warning("returned the answer to %s to %s; retrying in %g s", response.request_id, self.reply_queue,
                    REQUEUE_PAUSE)
        time.sleep(REQUEUE_PAUSE)

        def nack() -> None:
            if self._channel is not None and generation == self.generation:
                self._channel.basic_nack(tag, requeue=True)
        self.call(nack)

    def _ack(self, tag: int, generation: int) -> None:
        def ack() -> None:
            if self._channel is not None and generation == self.generation:
                self._channel.basic_ack(tag)
        self.call(ack)

    # -- TransportClient -------------------------------------------------------------------------------------
    def submit(self, request: SoundRequest) -> None:
        if self.failure is not None:
            raise TagError(f"the broker connection thread died ({self.failure})", code="transport_failed")
        request.reply_to = self.reply_queue
        if not request.client:
            request.client = self.name or "cli"
        pending = _Pending(request, encode(request), request.backend)  # MessageError (a TagError) on bad input
        with self._lock:
            self._pending[request.request_id] = pending
        self.call(lambda: self._publish(request.request_id))
        if not pending.confirmed.wait(self.settings.submit_timeout):
            with self._lock:
                self._pending.pop(request.request_id, None)
            cause = f"; last error: {self.last_error}" if self.last_error else ""
            raise TagError(f"the broker did not accept the request within {self.settings.submit_timeout:g} s "
                           f"(is RabbitMQ running and TAG_BROKER_URL right?{cause})", code="broker_unavailable")

    def cancel(self, request_id: str) -> None:
        """Publish the cancel on the fanout exchange every worker listens to (confirmed by the broker)."""
        def publish() -> None:
            if self._channel is None:
                raise NotConnected("no channel")
            self._channel.basic_publish(self.settings.control_exchange, "", b"", pika.BasicProperties(
                correlation_id=request_id, type="cancel"))
        try:
            self.call(publish).result(timeout=self.settings.submit_timeout)
        except Exception as exc:
            raise TagError(f"the cancel could not reach the workers: {exc}", code="broker_unavailable") from None

    def add_listener(self, listener: Listener) -> None:
        self.listeners.append(listener)
        if not self._consuming:
            self._consuming = True

            def consume() -> None:
                if self._channel is not None:
                    self._consume()
            self.call(consume)

    def queue_depths(self, backends: Sequence[str]) -> dict[str, int]:
        return self._depths.read(backends)

    def outage(self) -> str | None:
        if self.failure is not None:
            return f"the broker connection thread died ({self.failure})"
        if not self.connected.is_set():
            return f"the broker cannot be reached ({self.last_error or 'connecting'}); reconnecting"
        return None

    def close(self) -> None:
        self.stop()
        self._events.put(None)
        self._dispatcher.join(5)


"""The frontend side: submit requests to the backend's request queue and receive this client's answers.

A client named "telegram" reads the durable queue `ResponseQueue.telegram`: answers that arrive while the bot
is down wait there, and an answer is acknowledged only after the listeners handled it (one that a listener
could not keep is returned to the queue and redelivered, to this or another consumer of the same name). An
unnamed client (a CLI call) reads a private queue `ResponseQueue.private.<random>` that it alone consumes (exclusive
consumer); it is durable with an expiry instead of exclusive so that an answer survives a broker restart mid-request.

`submit` returns once the broker confirmed the request; until then it is kept and republished after a
reconnect. Duplicate answers (a request redelivered after a worker crash) reach the listeners only once.

A submit costs the broker one publish and nothing synchronous: requests submitted at once are published together
and their confirms collected as they come (publisher.py), the wake-up note for workers goes out on a channel that
waits for nothing, once per queue per batch of confirms, and the "queued" position comes from counts cached for a
second (depths.py). Only the first request for a backend on each connection declares its queues.
"""
from __future__ import annotations

import collections
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import pika
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from tagcore.errors import MessageError, TagError
from tagcore.messages import ProgressEvent, SoundRequest, SoundResponse, decode, encode
from tagcore.transport import Event, Listener, TransportClient

from .depths import QueueDepths
from .iothread import IOThread, NotConnected
from .publisher import ConfirmedPublisher, Outcome
from .settings import RabbitSettings
from .topology import (PERSISTENT, PRIORITIES, REPUBLISHED_HEADER, dead_letter, declare_control_exchange,
                       declare_dead_letter_queue, declare_queue, declare_request_queue, declare_response_queue,
                       oversize_limit, reason_of, wake_note)

log = logging.getLogger(__name__)
SEEN_MEMORY = 100_000
REQUEUE_PAUSE = 1.0
"""Seconds before an answer no listener could keep is returned to the queue (and soon redelivered)."""
REFUSED_PAUSE = 0.5
"""Seconds before requests the broker refused (nack: say, a queue without a leader) are published again."""


class _Pending:
    """A request accepted by `submit` and not confirmed yet. The flags belong to the I/O thread."""

    def __init__(self, request: SoundRequest, body: bytes, backend: str) -> None:
        self.request = request
        self.body = body
        self.backend = backend
        self.confirmed = threading.Event()
        """Set once the broker confirmed it, or once it failed for good (then `error` says why)."""
        self.error: TagError | None = None
        self.in_flight = False
        self.sent = False
        """Published at least once: a copy may already wait in the queue (or run) when it goes out again."""
        self.position = 1
        self.workers = 0


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
        self._queued: collections.deque[str] = collections.deque()
        """Ids of accepted requests waiting to be published (guarded by `_lock`, like `_pending`)."""
        self._lock = threading.Lock()
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._channel: BlockingChannel | None = None
        """Consumes the reply queue; in (waiting) confirm mode for dead letters and cancels."""
        self._notes: BlockingChannel | None = None
        """Wake-up notes: not in confirm mode, nothing waits for them."""
        self._publisher = ConfirmedPublisher(self._on_settled, self._on_publisher_closed)
        self._woken: set[str] = set()
        """Request queues whose new requests were confirmed and whose wake-up note is due (I/O thread)."""
        self._notes_due = False
        self._refused = False
        self._max_message_size: int | None = None
        """The broker's limit, once it refused a larger message (RabbitMQ 4: 16 MiB by default)."""
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
        self._notes = connection.channel()
        self._publisher.open(connection)
        self._declared = set()
        self._depths.forget_levels()
        if self._consuming:
            self._consume()
        with self._lock:  # accepted by submit but never confirmed by the old connection: publish them again
            self._queued = collections.deque(self._pending)
        self._schedule(self._flush)

    def on_disconnect(self) -> None:
        self._channel = self._notes = None
        self._publisher.forget()

    def _schedule(self, fn: Callable[[], object]) -> None:
        """Run `fn` on the I/O thread after the current callback (a failure is logged, not lost in a future)."""
        self.call(fn).add_done_callback(_log_failure)

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

    def _flush(self) -> None:
        """Publish every accepted request that waits to go out, without waiting for the broker's confirms; then
        recount the queues whose counts are due (after the publishes, which are on their way by then)."""
        if self._connection is None:
            return  # the next connection's setup publishes everything pending
        if not self._publisher.is_open:  # the broker closed the last one (a message over its size limit)
            self._publisher.open(self._connection)
        with self._lock:
            batch = [self._pending[i] for i in self._queued if i in self._pending]
            self._queued.clear()
        backends: set[str] = set()
        for pending in batch:
            if pending.in_flight or pending.confirmed.is_set():
                continue
            if self._max_message_size is not None and len(pending.body) > self._max_message_size:
                self._fail(pending, MessageError(
                    f"the request is {len(pending.body)} bytes, over the broker's max_message_size of "
                    f"{self._max_message_size} (raise it in rabbitmq.conf)"))
                continue
            self._declare(pending.backend)
            self._send(pending)
            backends.add(pending.backend)
        for backend in backends:
            self._depths.recount_stale(backend)

    def _declare(self, backend: str) -> None:
        """The first request for `backend` on this connection declares its queues (requests wait for a worker
        that has not started yet), which also counts what waits there."""
        if backend in self._declared or self._channel is None:
            return
        ready = [declare_request_queue(self._channel, self.settings, backend, level).message_count
                 for level in range(PRIORITIES)]
        workers = declare_queue(self._channel, self.settings.presence_queue_for(backend), None).consumer_count
        self._depths.seed(backend, ready, workers)
        self._declared.add(backend)

    def _send(self, pending: _Pending) -> None:
        request = pending.request
        priority = min(PRIORITIES - 1, max(0, request.priority))
        queue_name = self.settings.request_queue_for(pending.backend, priority)
        if not pending.sent:
            levels = self._depths.levels(pending.backend)
            pending.position, pending.workers = levels.place(priority), levels.workers
        headers = {REPUBLISHED_HEADER: 1} if pending.sent else None
        pending.in_flight = pending.sent = True
        self._publisher.publish("", queue_name, pending.body, pika.BasicProperties(
            delivery_mode=PERSISTENT, correlation_id=request.request_id, reply_to=self.reply_queue,
            type="request", headers=headers), lambda outcome: self._settle(pending, queue_name, outcome))

    def _settle(self, pending: _Pending, queue_name: str, outcome: Outcome) -> None:
        """The broker's answer to one publish (inside pika's event loop: no blocking calls here)."""
        pending.in_flight = False
        if outcome is Outcome.CONFIRMED:
            with self._lock:
                self._pending.pop(pending.request.request_id, None)
            pending.confirmed.set()
            self._woken.add(queue_name)
            note = "" if pending.workers else f"no worker is serving {pending.request.backend!r} right now"
            self._events.put((ProgressEvent.about(pending.request, "queued", position=max(1, pending.position),
                                                  message=note), None, self.generation))
        elif outcome is Outcome.REFUSED:
            with self._lock:
                self._queued.append(pending.request.request_id)
            self._refused = True
        # LOST: published again on a new channel (_on_publisher_closed) or connection (setup)

    def _on_settled(self) -> None:
        """After a batch of confirms (inside pika's event loop): wake-up notes and refused requests are handled
        on the I/O thread right after it."""
        if self._woken and not self._notes_due:
            self._notes_due = True
            self._schedule(self._send_notes)
        if self._refused and self._connection is not None:
            self._refused = False
            self._connection.call_later(REFUSED_PAUSE, self._flush)

    def _send_notes(self) -> None:
        """One wake-up note per queue that received requests: idle workers serving it look into it."""
        self._notes_due = False
        woken, self._woken = self._woken, set()
        if self._notes is None:
            return  # disconnected: workers look into every queue when they reconnect
        for queue_name in sorted(woken):
            self._notes.basic_publish(self.settings.control_exchange, "", b"", wake_note(queue_name))

    def _on_publisher_closed(self, reason: Exception) -> None:
        """The broker closed the publishing channel (not the connection): if it refused a message over its size
        limit, requests over that limit fail; the others go out again on a new channel."""
        limit = oversize_limit(str(getattr(reason, "reply_text", "")))
        if limit is not None:
            self._max_message_size = limit
        with self._lock:
            self._queued.extend(self._pending)
        if self._connection is not None and self._connection.is_open:
            log.warning("the broker closed the publishing channel (%s); publishing again", reason)
            self._schedule(self._flush)

    def _fail(self, pending: _Pending, error: TagError) -> None:
        with self._lock:
            self._pending.pop(pending.request.request_id, None)
        pending.error = error
        pending.confirmed.set()

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
            self._queued.append(request.request_id)
        self._schedule(self._flush)
        if not pending.confirmed.wait(self.settings.submit_timeout):
            with self._lock:
                self._pending.pop(request.request_id, None)
            cause = f"; last error: {self.last_error}" if self.last_error else ""
            raise TagError(f"the broker did not accept the request within {self.settings.submit_timeout:g} s "
                           f"(is RabbitMQ running and TAG_BROKER_URL right?{cause})", code="broker_unavailable")
        if pending.error is not None:
            raise pending.error

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


def _log_failure(future: "Future[object]") -> None:
    """Scheduled I/O-thread work nobody waits for: a failure (a bug; lost connections are handled there) is
    logged instead of vanishing with its future."""
    if not future.cancelled() and (error := future.exception()) is not None and not isinstance(error, NotConnected):
        log.error("broker I/O work failed: %s: %s", type(error).__name__, error, exc_info=error)

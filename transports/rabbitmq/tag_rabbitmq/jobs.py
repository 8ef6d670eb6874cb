"""The worker side: a JobSource that consumes the request queues of the backends a worker serves.

Guarantees (see the README's RabbitMQ section):
- a request is acknowledged only after its response was confirmed by the broker, so a worker that dies
  mid-job costs nothing: the broker redelivers the request to another worker;
- a worker remembers the ids it answered, so a request redelivered to it after a reconnect is not run twice
  (a copy answered twice by different workers is dropped by the client, which deduplicates by request id);
- a request delivered more than `max_attempts` times (it keeps killing workers) is answered with an error;
- an undecodable message is parked in the dead-letter queue with the reason and never reaches the service.
Deadlines are enforced by the GeneratorService, which answers expired requests with a "timed out" error
when it takes them; a request nobody takes is timed out by the waiting client itself.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Sequence

import pika
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from tagcore.errors import GenerationFailed, MessageError, TagError
from tagcore.messages import ProgressEvent, SoundRequest, SoundResponse, decode, encode
from tagcore.spec import BackendSpec
from tagcore.transport import Job, JobSource
from tagcore.worker import default_worker_id

from .catalog import announce
from .iothread import IOThread, NotConnected
from .settings import RabbitSettings
from .topology import (PERSISTENT, dead_letter, declare_dead_letter_queue, declare_request_queue,
                       declare_response_queue, delivery_count, reason_of)

log = logging.getLogger(__name__)
ANSWERED_MEMORY = 100_000


def queue_names_for(backends: Sequence[BackendSpec]) -> list[str]:
    """Backend names plus their aliases: clients resolve aliases from the catalog, but a request sent under an
    alias the client did not know yet still reaches the worker."""
    names: list[str] = []
    for spec in backends:
        names.extend(n for n in spec.names if n not in names)
    return names


class RabbitJob(Job):
    def __init__(self, source: "RabbitJobSource", request: SoundRequest, tag: int, generation: int,
                 redelivered: bool) -> None:
        self.source = source
        self.request = request
        self.tag = tag
        self.generation = generation
        self.redelivered = redelivered
        self.done = False

    def progress(self, event: ProgressEvent) -> None:
        self.source.publish_progress(self.request, event)

    def respond(self, response: SoundResponse) -> None:
        self.source.respond(self, response)

    def release(self) -> None:
        self.source.release(self)


class RabbitJobSource(JobSource, IOThread):
    def __init__(self, params: pika.ConnectionParameters, settings: RabbitSettings, backends: Sequence[BackendSpec], *,
                 prefetch: int = 1, worker_id: str | None = None) -> None:
        IOThread.__init__(self, params, name="tag-rabbitmq-worker-io", max_delay=settings.reconnect_max_delay)
        self.settings = settings
        self.specs = list(backends)
        self.backends = queue_names_for(self.specs)
        self.prefetch = max(1, prefetch)
        self.worker_id = worker_id or default_worker_id()
        self._jobs: queue.Queue[RabbitJob] = queue.Queue()
        self._answered: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._answered_lock = threading.Lock()
        self._channel: BlockingChannel | None = None
        self._progress_channel: BlockingChannel | None = None
        self.dead_lettered = 0
        self.start()

    # -- I/O thread ----------------------------------------------------------------------------------------
    def setup(self, connection: BlockingConnection) -> None:
        channel = connection.channel()
        channel.confirm_delivery()
        declare_dead_letter_queue(channel, self.settings)
        declare_response_queue(channel, self.settings.response_queue)
        channel.basic_qos(prefetch_count=self.prefetch)
        for backend in self.backends:
            name = declare_request_queue(channel, self.settings, backend)
            channel.basic_consume(name, self._on_message)
        announce(channel, self.settings, self.specs, self.worker_id)  # consuming first: announced = available
        self._progress_channel = connection.channel()
        self._channel = channel

    def on_disconnect(self) -> None:
        # Deliveries of the dead connection are back in the broker's queue; drop our stale copies.
        self._channel = self._progress_channel = None
        while True:
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                break

    def _on_message(self, channel: BlockingChannel, method, properties: pika.BasicProperties, body: bytes) -> None:
        """Handle one delivery; whatever is wrong with it costs that message only, never the consumer."""
        attempts = delivery_count(properties) + 1  # from the broker, before the body is even looked at
        if attempts > self.settings.max_attempts + 1:  # even answering it with an error failed: park it unread
            self._park(channel, method, body, f"delivered {attempts} times and never answered")
            return
        try:
            message = decode(body)
            if not isinstance(message, SoundRequest):
                raise MessageError(f"a {message.kind} message arrived in a request queue")
        except Exception as error:  # MessageError, or a bug in decoding: either way this message is the problem
            self._park(channel, method, body, reason_of(error))
            return
        if self.was_answered(message.request_id):
            channel.basic_ack(method.delivery_tag)
            return
        if attempts > self.settings.max_attempts:
            error = GenerationFailed(f"the request was tried {attempts - 1} times and each attempt ended without "
                                     "an answer (the worker stopped); giving up")
            self._publish_response(channel, SoundResponse.failure(message, error, worker=self.worker_id))
            channel.basic_ack(method.delivery_tag)
            return
        self._jobs.put(RabbitJob(self, message, method.delivery_tag, self.generation, bool(method.redelivered)))

    def _park(self, channel: BlockingChannel, method, body: bytes, reason: str) -> None:
        dead_letter(channel, self.settings, body, reason, source=method.routing_key, by=self.worker_id)
        channel.basic_ack(method.delivery_tag)
        self.dead_lettered += 1
        log.warning("dead-lettered a malformed message from %s: %s", method.routing_key, reason)

    def _reply_queue(self, reply_to: str | None) -> str:
        return reply_to if self.settings.accepts_reply_to(reply_to) else self.settings.response_queue

    def _publish_response(self, channel: BlockingChannel, response: SoundResponse) -> None:
        try:
            body = encode(response)
        except MessageError as error:  # e.g. audio over the wire limit: the requester still hears back
            body = encode(dataclasses.replace(response, ok=False, audio=None, model_id="", seed=None, timings={},
                                              metadata={}, error_code=error.code, error_message=error.message))
        channel.basic_publish("", self._reply_queue(response.reply_to), body, pika.BasicProperties(
            delivery_mode=PERSISTENT, correlation_id=response.request_id, type="response"))
        self._remember(response.request_id)

    # -- answered ids ----------------------------------------------------------------------------------------
    def _remember(self, request_id: str) -> None:
        with self._answered_lock:
            self._answered[request_id] = None
            while len(self._answered) > ANSWERED_MEMORY:
                self._answered.popitem(last=False)

    def was_answered(self, request_id: str) -> bool:
        with self._answered_lock:
            return request_id in self._answered

    # -- JobSource -------------------------------------------------------------------------------------------
    def next_jobs(self, max_jobs: int, timeout: float) -> list[Job]:
        if self.failure is not None:
            raise TagError(f"the broker connection thread died ({self.failure})", code="transport_failed")
        jobs: list[Job] = []
        end = time.monotonic() + timeout
        while not jobs:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return jobs
            try:
                job = self._jobs.get(timeout=remaining)
            except queue.Empty:
                return jobs
            if job.generation == self.generation:
                jobs.append(job)
        while len(jobs) < max_jobs:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job.generation == self.generation:
                jobs.append(job)
        return jobs

    def respond(self, job: RabbitJob, response: SoundResponse) -> None:
        """Publish with a broker confirm, then ack; retried across reconnects until confirmed."""
        delay = 0.2
        while True:
            def publish_and_ack() -> None:
                if self._channel is None:
                    raise NotConnected("no channel")
                self._publish_response(self._channel, response)
                if job.generation == self.generation:
                    self._channel.basic_ack(job.tag)
            try:
                self.call(publish_and_ack).result()
                job.done = True
                return
            except NotConnected:
                if self.stopped:
                    raise TagError("the worker is stopping; the request goes back to the queue",
                                   code="worker_stopping") from None
                time.sleep(delay)
                delay = min(delay * 2, self.settings.reconnect_max_delay)

    def publish_progress(self, request: SoundRequest, event: ProgressEvent) -> None:
        """Best effort and non-blocking: progress is not confirmed and is dropped while disconnected."""
        if not self.connected.is_set():
            return
        body = encode(event)
        target = self._reply_queue(request.reply_to)

        def publish() -> None:
            if self._progress_channel is not None:
                self._progress_channel.basic_publish("", target, body, pika.BasicProperties(
                    correlation_id=request.request_id, type="progress"))
        self.call(publish)

    def release(self, job: RabbitJob) -> None:
        def reject() -> None:
            if self._channel is not None and job.generation == self.generation:
                self._channel.basic_reject(job.tag, requeue=True)
        if not job.done:
            try:
                self.call(reject).result(timeout=10)
            except Exception:  # closing the connection requeues it anyway
                pass

    def close(self) -> None:
        """Stop consuming; every unanswered job (in hand or prefetched) is requeued by closing the connection."""
        self.stop()

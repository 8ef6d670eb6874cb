"""The worker side: a JobSource that consumes the request queues of the backends a worker serves.

Guarantees (see the README's RabbitMQ section):
- a request is acknowledged only after its response was confirmed by the broker, so a worker that dies
  mid-job costs nothing: the broker redelivers the request to another worker;
- a worker remembers the ids it answered (a day, bounded) and the ids it is generating, so a request
  redelivered to it after a reconnect or a broker restart is never generated twice: a copy of a running job is
  acknowledged by that job's answer, a copy of an answered one is dropped (a copy answered twice by different
  workers is dropped by the client, which deduplicates by request id);
- a cancel (fanout exchange `<request_queue>.cancel`) reaches every worker: a cancelled request is answered
  "cancelled" when taken, and a running one stops at its backend's next progress callback;
- a request delivered more than `max_attempts` times (it keeps killing workers) is answered with an error;
- an undecodable message is parked in the dead-letter queue with the reason and never reaches the service.
Deadlines are enforced by the GeneratorService, which answers expired requests with a "timed out" error
when it takes them; a request nobody takes is timed out by the waiting client itself.
"""
from __future__ import annotations

import logging
import queue
import time
from collections.abc import Sequence

import pika
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from tagcore import plugins
from tagcore.errors import Cancelled, GenerationFailed, MessageError, PluginError, TagError
from tagcore.messages import ProgressEvent, SoundRequest, SoundResponse, decode, encode
from tagcore.recent import RecentIds
from tagcore.transport import Job, JobSource
from tagcore.worker import default_worker_id

from .iothread import IOThread, NotConnected
from .settings import RabbitSettings
from .topology import (PERSISTENT, dead_letter, declare_cancel_exchange, declare_dead_letter_queue,
                       declare_request_queue, declare_response_queue)

log = logging.getLogger(__name__)
ANSWERED_MEMORY = 100_000
ANSWERED_TTL = 24 * 3600.0
"""How long a worker remembers an answered request id (a redelivered copy is dropped within it)."""


def queue_names_for(backends: Sequence[str]) -> list[str]:
    """Backend names plus their aliases (when the class is installed), so `-b sine` requests reach `tone`."""
    names: list[str] = []
    registry = plugins.backends()
    for backend in backends:
        candidates = [backend]
        try:
            cls = registry.get(backend)
            candidates = [cls.name, *cls.aliases, backend]
        except (TagError, PluginError):
            pass
        names.extend(n for n in candidates if n not in names)
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

    @property
    def cancelled(self) -> bool:
        return self.request.request_id in self.source.cancelled

    def progress(self, event: ProgressEvent) -> None:
        self.source.publish_progress(self.request, event)

    def respond(self, response: SoundResponse) -> None:
        self.source.respond(self, response)

    def release(self) -> None:
        self.source.release(self)


class RabbitJobSource(JobSource, IOThread):
    def __init__(self, params: pika.ConnectionParameters, settings: RabbitSettings, backends: Sequence[str], *,
                 prefetch: int = 1, worker_id: str | None = None) -> None:
        IOThread.__init__(self, params, name="tag-rabbitmq-worker-io", max_delay=settings.reconnect_max_delay)
        self.settings = settings
        self.backends = queue_names_for(backends)
        self.prefetch = max(1, prefetch)
        self.worker_id = worker_id or default_worker_id()
        self._jobs: queue.Queue[RabbitJob] = queue.Queue()
        self._answered = RecentIds(ANSWERED_MEMORY, ANSWERED_TTL)
        self._running: dict[str, RabbitJob] = {}
        """Jobs handed to the service and not answered yet, by request id (touched on the I/O thread only)."""
        self._channel: BlockingChannel | None = None
        self._progress_channel: BlockingChannel | None = None
        self.cancelled = RecentIds()
        """Ids cancelled by their requesters (from the cancel exchange)."""
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
        self._progress_channel = connection.channel()
        exchange = declare_cancel_exchange(self._progress_channel, self.settings)
        private = self._progress_channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        self._progress_channel.queue_bind(private, exchange)
        self._progress_channel.basic_consume(private, self._on_cancel, auto_ack=True)
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
        try:
            message = decode(body)
            if not isinstance(message, SoundRequest):
                raise MessageError(f"a {message.kind} message arrived in a request queue")
        except MessageError as error:
            dead_letter(channel, self.settings, body, error.message, source=method.routing_key, by=self.worker_id)
            channel.basic_ack(method.delivery_tag)
            self.dead_lettered += 1
            log.warning("dead-lettered a malformed message from %s: %s", method.routing_key, error.message)
            return
        if self.was_answered(message.request_id):
            channel.basic_ack(method.delivery_tag)
            return
        running = self._running.get(message.request_id)
        if running is not None:  # a copy of what we are generating right now: never run it twice
            if running.generation == self.generation:
                channel.basic_ack(method.delivery_tag)  # a second published copy; the running one answers
            else:  # our delivery died with the old connection: the running job answers and acks this one
                running.tag, running.generation = method.delivery_tag, self.generation
            return
        if message.request_id in self.cancelled:  # dropped unstarted, answered at once
            self._publish_response(channel, SoundResponse.failure(
                message, Cancelled("the request was cancelled before it started"), worker=self.worker_id))
            channel.basic_ack(method.delivery_tag)
            return
        attempts = int((properties.headers or {}).get("x-delivery-count", 0)) + 1
        if attempts > self.settings.max_attempts:
            error = GenerationFailed(f"the request was tried {attempts - 1} times and each attempt ended without "
                                     "an answer (the worker stopped); giving up")
            self._publish_response(channel, SoundResponse.failure(message, error, worker=self.worker_id))
            channel.basic_ack(method.delivery_tag)
            return
        self._jobs.put(RabbitJob(self, message, method.delivery_tag, self.generation, bool(method.redelivered)))

    def _on_cancel(self, channel: BlockingChannel, method, properties: pika.BasicProperties, body: bytes) -> None:
        if properties.type == "cancel" and properties.correlation_id:
            self.cancelled.add(properties.correlation_id)

    def _reply_queue(self, reply_to: str | None) -> str:
        return reply_to if self.settings.accepts_reply_to(reply_to) else self.settings.response_queue

    def _publish_response(self, channel: BlockingChannel, response: SoundResponse) -> None:
        try:
            body = encode(response)
        except MessageError as error:  # e.g. audio over the wire limit: the requester still hears back
            body = encode(SoundResponse(request_id=response.request_id, ok=False, prompt=response.prompt,
                                        duration=response.duration, backend=response.backend,
                                        error_code=error.code, error_message=error.message,
                                        chat_id=response.chat_id, user_id=response.user_id,
                                        reply_to=response.reply_to, worker=response.worker))
        channel.basic_publish("", self._reply_queue(response.reply_to), body, pika.BasicProperties(
            delivery_mode=PERSISTENT, correlation_id=response.request_id, type="response"))
        self._remember(response.request_id)

    # -- answered and running ids ---------------------------------------------------------------------------
    def _remember(self, request_id: str) -> None:
        self._answered.add(request_id)

    def was_answered(self, request_id: str) -> bool:
        return request_id in self._answered

    def _claim(self, job: RabbitJob) -> bool:
        """On the I/O thread: mark `job` running, or (False) ack it as a copy of one answered or running."""
        if job.generation != self.generation:
            return False  # its delivery died with an old connection; the broker redelivers it
        request_id = job.request.request_id
        if self.was_answered(request_id) or request_id in self._running:
            self._channel.basic_ack(job.tag)
            return False
        self._running[request_id] = job
        return True

    # -- JobSource -------------------------------------------------------------------------------------------
    def next_jobs(self, max_jobs: int, timeout: float) -> list[Job]:
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
            jobs.append(job)
        while len(jobs) < max_jobs:
            try:
                jobs.append(self._jobs.get_nowait())
            except queue.Empty:
                break
        try:
            claimed = self.call(lambda: [self._claim(job) for job in jobs]).result(timeout=30)
        except (NotConnected, TimeoutError):
            return []  # the connection dropped: the broker redelivers them
        return [job for job, ok in zip(jobs, claimed) if ok]

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
                self.call(lambda: self._running.pop(job.request.request_id, None))
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
        self.call(lambda: self._running.pop(job.request.request_id, None))

    def close(self) -> None:
        """Stop consuming; every unanswered job (in hand or prefetched) is requeued by closing the connection."""
        self.stop()

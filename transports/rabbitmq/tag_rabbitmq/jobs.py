"""The worker side: a JobSource that consumes the request queues of the backends a worker serves.

Guarantees (see the README's RabbitMQ section):
- a request is acknowledged only after its response was confirmed by the broker, so a worker that dies
  mid-job costs nothing: the broker redelivers the request to another worker;
- a worker remembers the ids it answered (a day, bounded) and the ids it is generating, so a request
  redelivered to it after a reconnect or a broker restart is never generated twice: a copy of a running job is
  acknowledged by that job's answer, a copy of an answered one is dropped (a copy answered twice by different
  workers is dropped by the client, which deduplicates by request id);
- a delivery that may be running on another worker (redelivered, or a copy its client published again) is held
  unstarted until that worker answers or stays silent long enough; one never delivered before starts at once,
  also right after a broker restart;
- what a worker gives back unprocessed (stopping) is returned with basic.nack, which RabbitMQ 4.3 does not count
  as a failed delivery; crashes and lost connections count on every version;
- an answer whose reply address is missing or not a TAG response queue is counted and logged, not published
  into a queue nobody reads; an answer over the broker's message size limit reaches its requester as an error;
- a cancel (fanout exchange `<request_queue>.cancel`) reaches every worker: a cancelled request is answered
  "cancelled" when taken, and a running one stops at its backend's next progress callback;
- a request delivered more than `max_attempts` times (it keeps killing workers) is answered with an error;
- an undecodable message is parked in the dead-letter queue with the reason and never reaches the service.
Deadlines are enforced by the GeneratorService, which answers expired requests with a "timed out" error
when it takes them; a request nobody takes is timed out by the waiting client itself.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, replace
from collections.abc import Sequence

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from tagcore.errors import Cancelled, GenerationFailed, MessageError, TagError
from tagcore.messages import ProgressEvent, SoundRequest, SoundResponse, decode, encode
from tagcore.recent import RecentIds
from tagcore.spec import BackendSpec
from tagcore.transport import Job, JobSource
from tagcore.worker import default_worker_id

from .catalog import announce
from .iothread import IOThread, NotConnected
from .settings import RabbitSettings
from .topology import (PERSISTENT, PRIORITIES, REPUBLISHED_HEADER, acquired_count, dead_letter,
                       declare_control_exchange, declare_dead_letter_queue, declare_request_queue, delivery_count,
                       oversize_limit, reason_of, woken_queue)

log = logging.getLogger(__name__)
ANSWERED_MEMORY = 100_000
RUNNING_REFRESH = 5.0
"""Seconds between a worker's announcements of the requests it is running."""
RUNNING_TTL = 3 * RUNNING_REFRESH
"""A request announced as running elsewhere counts as such for this long after the last announcement."""
IDLE_POLL = 2.0
"""Seconds between looks into every queue (a sweep): notes can be lost, and a request the broker requeues (its
worker died) comes without one. An idle worker that hears no note sweeps this often."""
WORKER_COUNT_TTL = IDLE_POLL
"""Seconds a backend's worker count (which splits a batch's fair share) is reused before the broker is asked again."""
ANNOUNCE_RETRY = 1.0
"""Seconds between attempts to announce the backends while the catalog stream is unavailable."""
ANSWERED_TTL = 24 * 3600.0
"""How long a worker remembers an answered request id (a redelivered copy is dropped within it)."""


def queue_names_for(backends: Sequence[BackendSpec]) -> list[str]:
    """Backend names plus their aliases: clients resolve aliases from the catalog, but a request sent under an
    alias the client did not know yet still reaches the worker."""
    names: list[str] = []
    for spec in backends:
        names.extend(n for n in spec.names if n not in names)
    return names


@dataclass
class _Held:
    tag: int
    generation: int
    request: SoundRequest
    redelivered: bool
    attempts: int
    since: float


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
    def __init__(self, params: pika.ConnectionParameters, settings: RabbitSettings, backends: Sequence[BackendSpec], *,
                 prefetch: int = 1, worker_id: str | None = None) -> None:
        IOThread.__init__(self, params, name="tag-rabbitmq-worker-io", max_delay=settings.reconnect_max_delay)
        self.settings = settings
        self.specs = list(backends)
        self.backends = queue_names_for(self.specs)
        self._request_queues = {settings.request_queue_for(b, p) for b in self.backends for p in range(PRIORITIES)}
        self.prefetch = max(1, prefetch)
        self.worker_id = worker_id or default_worker_id()
        self._announcer = f"{self.worker_id}/{uuid.uuid4().hex[:8]}"
        """Signs this source's announcements: two sources in one process share a worker id (host:pid), and each
        must hear what the other runs and answered."""
        self._turn = 0
        self._maybe: set[str] = set()
        """Request queues that may hold work: named by wake-up notes, and not seen empty since (I/O thread)."""
        self._swept = float("-inf")
        """When every queue was last looked into with passive declares (monotonic s)."""
        self._workers: dict[str, tuple[float, int]] = {}
        """Per backend: when its worker count was asked and the count (for batches' fair shares)."""
        self._arrived = threading.Event()
        self._answered = RecentIds(ANSWERED_MEMORY, ANSWERED_TTL)
        self._running: dict[str, RabbitJob] = {}
        """Jobs handed to the service and not answered yet, by request id (touched on the I/O thread only)."""
        self.elsewhere = RecentIds(ttl=RUNNING_TTL)
        """Ids other workers announced as running (refreshed every RUNNING_REFRESH s while they run)."""
        self._held: dict[str, _Held] = {}
        """Deliveries kept unacknowledged and unstarted while another worker may be running the same request."""
        self._channel: BlockingChannel | None = None
        """Deliveries: basic.get, acks and give-backs (and the presence consumers)."""
        self._answers: BlockingChannel | None = None
        """Confirmed publishes (answers, dead letters, announcements): its own channel, because the broker closes
        a channel that publishes a message over its size limit, and that must not return the deliveries."""
        self._progress_channel: BlockingChannel | None = None
        self.cancelled = RecentIds()
        """Ids cancelled by their requesters (from the cancel exchange)."""
        self.dead_lettered = 0
        self.unaddressed = 0
        """Answers not published because their reply address was missing or not a TAG response queue."""
        self.start()

    # -- I/O thread ----------------------------------------------------------------------------------------
    def setup(self, connection: BlockingConnection) -> None:
        channel = connection.channel()
        answers = _confirmed_channel(connection)
        declare_dead_letter_queue(answers, self.settings)
        for backend in self.backends:
            for priority in range(PRIORITIES):
                declare_request_queue(channel, self.settings, backend, priority)
            presence = channel.queue_declare(self.settings.presence_queue_for(backend), durable=True).method.queue
            channel.basic_consume(presence, self._on_presence)
        self._announce_specs(connection)  # present first: announced = available
        self._progress_channel = connection.channel()
        exchange = declare_control_exchange(self._progress_channel, self.settings)
        private = self._progress_channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        self._progress_channel.queue_bind(private, exchange)
        self._progress_channel.basic_consume(private, self._on_control, auto_ack=True)
        self._channel, self._answers = channel, answers
        self._look_everywhere()  # requests may have arrived, or been put back, while we were away
        self._announce_running(connection)

    def _announce_specs(self, connection: BlockingConnection) -> None:
        """Announce the backends on a channel of their own. Right after a broker restart the catalog stream may
        not be back yet (404: its home node "down" while it recovers); that is retried every ANNOUNCE_RETRY s while
        the worker serves, instead of costing the whole connection (the stream holds earlier announcements)."""
        channel = connection.channel()
        try:
            channel.confirm_delivery()
            announce(channel, self.settings, self.specs, self.worker_id)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 404:
                raise
            log.info("could not announce the backends yet (%s); retrying in %g s", exc.reply_text, ANNOUNCE_RETRY)
            connection.call_later(ANNOUNCE_RETRY, lambda: self._announce_specs(connection)
                                  if self._connection is connection else None)
        finally:
            if channel.is_open:
                channel.close()

    def on_disconnect(self) -> None:
        # Deliveries of the dead connection are back in the broker's queue (and redelivered on reconnect).
        self._channel = self._answers = self._progress_channel = None

    def before_close(self) -> None:
        """Closing: give back the deliveries held unstarted and any job not answered with basic.nack, which
        RabbitMQ 4.3 does not count as a failed delivery (a closed connection would)."""
        if self._channel is None:
            return
        for held in self._held.values():
            if held.generation == self.generation:
                self._channel.basic_nack(held.tag, requeue=True)
        self._held.clear()
        for job in self._running.values():
            if not job.done and job.generation == self.generation:
                self._channel.basic_nack(job.tag, requeue=True)

    def _fetch(self, max_jobs: int) -> list[RabbitJob]:
        """On the I/O thread: take up to `max_jobs` requests, highest priority first and oldest first within one
        (rotating over the backends), with basic.get: a worker takes work only when it is free, so a request
        never waits in one busy worker's buffer while another worker is idle or a newer request of a higher
        priority arrives. Only queues that may hold work are asked: on a quorum queue an empty basic.get costs a
        Raft round (about 0.7 ms, 7x a passive declare), and polling ten empty queues per wake-up was most of
        the transport's added latency."""
        known = set(self._running)
        try:
            return self._take(max_jobs)
        except BaseException:
            # The connection dropped after requests were taken and marked running but before they reached the
            # service (the broker stopped right after a basic.get answered). Their deliveries go back to the
            # queue with the connection; a copy taken after the reconnect must be run, not taken for a copy of
            # a job running here, which would wait forever for an answer nobody generates.
            for request_id in set(self._running) - known:
                del self._running[request_id]
            raise

    def _take(self, max_jobs: int) -> list[RabbitJob]:
        channel = self._channel
        if channel is None:
            return []
        jobs = self._release_held(channel, max_jobs)
        queues = self._queues_with_work(channel)
        while queues and len(jobs) < max_jobs:
            queue_name, backend = queues[0]
            method, properties, body = channel.basic_get(queue_name)
            if method is None or method.message_count == 0:
                queues.pop(0)  # empty now: its next request comes with a wake-up note
            if method is None:
                continue
            if not jobs and max_jobs > 1:  # a batch takes this worker's share of what waits, no more
                max_jobs = min(max_jobs, self._share(channel, backend, method.message_count + 1))
            job = self._accept(channel, method, properties, body)
            if job is not None:
                jobs.append(job)
        self._maybe.update(name for name, _ in queues)  # not seen empty: look again next time
        return jobs

    def _queues_with_work(self, channel: BlockingChannel) -> list[tuple[str, str]]:
        """(queue, backend) that may hold requests, in the order to take them (highest priority first, backends
        taking turns within one): the queues named by wake-up notes since the last fetch, and every IDLE_POLL s
        the queues a sweep of passive declares finds non-empty. Taking the marks here, not clearing them after,
        keeps a note heard during the fetch for the next one."""
        marked, self._maybe = self._maybe, set()
        now = time.monotonic()
        sweep = now - self._swept >= IDLE_POLL
        if sweep:
            self._swept = now
        turn = self._turn % len(self.backends)
        self._turn += 1
        backends = self.backends[turn:] + self.backends[:turn]
        found: list[tuple[str, str]] = []
        for priority in reversed(range(PRIORITIES)):
            for backend in backends:
                name = self.settings.request_queue_for(backend, priority)
                if name in marked or (sweep and channel.queue_declare(name, passive=True).method.message_count):
                    found.append((name, backend))
        return found

    def _look_everywhere(self) -> None:
        """Mark every queue as possibly holding work (each stays marked until a basic.get finds it empty), and
        wake the worker: after a reconnect notes published while away are lost, a passive declare may count a
        restarted quorum queue as empty before it has a leader, and a requeued request comes without a note."""
        self._maybe.update(self._request_queues)
        self._arrived.set()

    def _share(self, channel: BlockingChannel, backend: str, waiting: int) -> int:
        """Requests a free worker may take at once: the waiting ones split over the workers of `backend`
        (counted at most WORKER_COUNT_TTL s ago: a worker that just started or stopped shifts one batch)."""
        now = time.monotonic()
        asked, workers = self._workers.get(backend, (float("-inf"), 1))
        if now - asked >= WORKER_COUNT_TTL:
            presence = self.settings.presence_queue_for(backend)
            workers = channel.queue_declare(presence, passive=True).method.consumer_count
            self._workers[backend] = (now, workers)
        return max(1, -(-waiting // max(1, workers)))

    def _accept(self, channel: BlockingChannel, method, properties: pika.BasicProperties,
                body: bytes) -> "RabbitJob | None":
        """A job to run, or None when the delivery was settled here (malformed, a copy, cancelled, given up):
        whatever is wrong with a message costs that message only, never the worker."""
        attempts = delivery_count(properties) + 1  # from the broker, before the body is even looked at
        if attempts > self.settings.max_attempts + 1:  # even answering it with an error failed: park it unread
            self._park(channel, method, body, f"delivered {attempts} times and never answered")
            return None
        try:
            message = decode(body)
            if not isinstance(message, SoundRequest):
                raise MessageError(f"a {message.kind} message arrived in a request queue")
        except Exception as error:  # MessageError, or a bug in decoding: either way this message is the problem
            self._park(channel, method, body, reason_of(error))
            return None
        if self.was_answered(message.request_id):
            channel.basic_ack(method.delivery_tag)
            return None
        running = self._running.get(message.request_id)
        if running is not None:  # a copy of what we are generating right now: never run it twice
            if running.generation == self.generation:
                channel.basic_ack(method.delivery_tag)  # a second published copy; the running one answers
            else:  # our delivery died with the old connection: the running job answers and acks this one
                running.tag, running.generation = method.delivery_tag, self.generation
            return None
        held = self._held.get(message.request_id)
        if held is not None and held.generation == self.generation:  # one more copy of a held request
            channel.basic_ack(method.delivery_tag)
            return None
        # Handed out before (counted by the broker whichever flag a restart leaves), or published again by its
        # client after a lost confirm: another worker may be generating it (a redelivery after a broker restart
        # reaches a free worker while the one still generating it reconnects). Only such a delivery waits.
        redelivered = bool(method.redelivered) or attempts > 1 or acquired_count(properties) > 0
        copy = bool((properties.headers or {}).get(REPUBLISHED_HEADER))
        if message.request_id in self.elsewhere or redelivered or copy:
            # Keep it unstarted until the worker running it answers or goes quiet.
            self._held[message.request_id] = _Held(method.delivery_tag, self.generation, message, redelivered,
                                                    attempts, time.monotonic())
            return None
        return self._start(channel, method.delivery_tag, message, redelivered, attempts)

    def _start(self, channel: BlockingChannel, tag: int, message: SoundRequest, redelivered: bool,
               attempts: int) -> "RabbitJob | None":
        """Answer a cancelled or given-up request at once; otherwise the job to run, announced as running."""
        if message.request_id in self.cancelled:  # dropped unstarted, answered at once
            self._publish_response(SoundResponse.failure(
                message, Cancelled("the request was cancelled before it started"), worker=self.worker_id))
            channel.basic_ack(tag)
            return None
        if attempts > self.settings.max_attempts:
            error = GenerationFailed(f"the request was tried {attempts - 1} times and each attempt ended without "
                                     "an answer (the worker stopped); giving up")
            self._publish_response(SoundResponse.failure(message, error, worker=self.worker_id))
            channel.basic_ack(tag)
            return None
        job = RabbitJob(self, message, tag, self.generation, redelivered)
        self._running[message.request_id] = job
        self._announce(message.request_id, "running")
        return job

    def _release_held(self, channel: BlockingChannel, max_jobs: int) -> list[RabbitJob]:
        """Settle held deliveries: ack those answered meanwhile, start those nobody runs any more."""
        jobs: list[RabbitJob] = []
        now = time.monotonic()
        for request_id, held in list(self._held.items()):
            if held.generation != self.generation:  # its delivery died with an old connection
                del self._held[request_id]
            elif self.was_answered(request_id):
                channel.basic_ack(held.tag)
                del self._held[request_id]
            elif len(jobs) < max_jobs and (request_id in self.cancelled or (
                    request_id not in self.elsewhere
                    and now - held.since >= self.settings.reconnect_max_delay + RUNNING_REFRESH)):
                del self._held[request_id]
                job = self._start(channel, held.tag, held.request, held.redelivered, held.attempts)
                if job is not None:
                    jobs.append(job)
        return jobs

    def _announce(self, request_id: str, state: str) -> None:
        """Tell the other workers (control exchange) that this worker runs or answered `request_id`."""
        if self._progress_channel is not None:
            self._progress_channel.basic_publish(self.settings.control_exchange, "", b"", pika.BasicProperties(
                correlation_id=request_id, type=state, app_id=self._announcer))

    def _announce_running(self, connection: BlockingConnection) -> None:
        """Every RUNNING_REFRESH s while connected (and at once after a reconnect): what this worker runs."""
        for request_id in list(self._running):
            self._announce(request_id, "running")
        connection.call_later(RUNNING_REFRESH, lambda: self._announce_running(connection)
                              if self._connection is connection else None)

    def _on_presence(self, channel: BlockingChannel, method, properties, body: bytes) -> None:
        """Nothing is published to presence queues; anything that is gets dropped."""
        channel.basic_ack(method.delivery_tag)

    def _on_control(self, channel: BlockingChannel, method, properties: pika.BasicProperties, body: bytes) -> None:
        if properties.type == "wake":  # the one note without a request id
            self._on_wake(properties)
            return
        request_id = properties.correlation_id
        if not request_id:
            return
        if properties.type == "cancel":
            self.cancelled.add(request_id)
        elif properties.app_id == self._announcer:
            return  # our own announcement
        elif properties.type == "running":
            self.elsewhere.add(request_id)
        elif properties.type == "answered":
            self.elsewhere.discard(request_id)
            self._remember(request_id)
            self._arrived.set()  # a held copy can be settled now

    def _on_wake(self, properties: pika.BasicProperties) -> None:
        """A client published a request: mark its queue, and wake the worker if it serves that queue."""
        queue = woken_queue(properties)
        if queue is None:  # a note that names no queue (an older client): look into every queue
            self._look_everywhere()
        elif queue in self._request_queues:  # a queue of a backend this worker serves
            self._maybe.add(queue)
            self._arrived.set()

    def _park(self, channel: BlockingChannel, method, body: bytes, reason: str) -> None:
        if self._answers is None:
            raise NotConnected("no channel")
        dead_letter(self._answers, self.settings, body, reason, source=method.routing_key, by=self.worker_id)
        channel.basic_ack(method.delivery_tag)
        self.dead_lettered += 1
        log.warning("dead-lettered a malformed message from %s: %s", method.routing_key, reason)

    def _reply_queue(self, reply_to: str | None) -> str | None:
        """Where answers and progress for `reply_to` go: a TAG response queue, or nowhere."""
        return reply_to if reply_to and self.settings.accepts_reply_to(reply_to) else None

    def _publish_response(self, response: SoundResponse) -> None:
        """Publish an answer and wait for the broker's confirm; then it counts as answered (remembered, and
        announced to the other workers). An answer with no TAG reply address is only logged and counted: nothing
        reads a queue it could go to."""
        target = self._reply_queue(response.reply_to)
        if target is None:
            self.unaddressed += 1
            log.warning("answered %s without publishing the answer: its reply address %r is not a TAG response "
                        "queue (%d such answers so far)", response.request_id, response.reply_to, self.unaddressed)
        else:
            self._publish_answer(target, response)
        self._remember(response.request_id)
        self._announce(response.request_id, "answered")

    def _publish_answer(self, target: str, response: SoundResponse) -> None:
        """An answer the broker refuses for its size (RabbitMQ 4 takes at most 16 MiB by default, 3.x 128 MiB;
        TAG's wire limit is 64 MiB of audio) reaches the requester as an error saying so, instead of being
        published again forever."""
        try:
            body = encode(response)
        except MessageError as error:  # e.g. audio over the wire limit: the requester still hears back
            body = encode(_as_failure(response, error))
        try:
            self._publish_confirmed(target, body, response.request_id)
        except pika.exceptions.ChannelClosedByBroker as exc:
            limit = oversize_limit(exc.reply_text)
            if limit is None or self._channel is None:
                raise
            log.warning("the broker refused the %d-byte answer to %s (%s)", len(body), response.request_id,
                        exc.reply_text)
            self._answers = _confirmed_channel(self._channel.connection)
            refused = MessageError(f"the answer is {len(body)} bytes, over the broker's max_message_size of "
                                   f"{limit} bytes (raise max_message_size in rabbitmq.conf, or ask for a shorter "
                                   "clip)")
            self._publish_confirmed(target, encode(_as_failure(response, refused)), response.request_id)

    def _publish_confirmed(self, target: str, body: bytes, request_id: str) -> None:
        if self._answers is None:
            raise NotConnected("no channel")
        self._answers.basic_publish("", target, body, pika.BasicProperties(
            delivery_mode=PERSISTENT, correlation_id=request_id, type="response"))

    # -- answered and running ids ---------------------------------------------------------------------------
    def _remember(self, request_id: str) -> None:
        self._answered.add(request_id)

    def was_answered(self, request_id: str) -> bool:
        return request_id in self._answered

    # -- JobSource -------------------------------------------------------------------------------------------
    def next_jobs(self, max_jobs: int, timeout: float) -> list[Job]:
        """Take what waits now; when nothing does, wait for a wake-up note (or poll every IDLE_POLL s)."""
        if self.failure is not None:
            raise TagError(f"the broker connection thread died ({self.failure})", code="transport_failed")
        end = time.monotonic() + timeout
        while True:
            self._arrived.clear()
            future = self.call(lambda: self._fetch(min(max_jobs, self.prefetch)))
            try:
                jobs = future.result(timeout=max(0.1, end - time.monotonic()))
            except TimeoutError:  # disconnected: give up the fetch unless it is running right now
                jobs = [] if future.cancel() else future.result()
            except NotConnected:
                jobs = []  # the connection dropped: the broker gives anything taken to a worker again
            except Exception:
                raise
            except BaseException as exc:  # a bug while taking deliveries: the connection is as good as dead
                self.failure = f"{type(exc).__name__}: {exc}"
                log.critical("taking requests failed (%s); closing the broker connection", self.failure,
                             exc_info=True)
                self.stop()  # what it took goes back to the queue
                return []
            remaining = end - time.monotonic()
            if jobs or remaining <= 0:
                return list(jobs)
            self._arrived.wait(min(remaining, IDLE_POLL))

    def respond(self, job: RabbitJob, response: SoundResponse) -> None:
        """Publish with a broker confirm, then ack; retried across reconnects until confirmed."""
        delay = 0.2
        while True:
            def publish_and_ack() -> None:
                if self._channel is None:
                    raise NotConnected("no channel")
                self._publish_response(response)
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
        target = self._reply_queue(request.reply_to)
        if target is None:
            return
        body = encode(event)

        def publish() -> None:
            if self._progress_channel is not None:
                self._progress_channel.basic_publish("", target, body, pika.BasicProperties(
                    correlation_id=request.request_id, type="progress"))
        self.call(publish)

    def release(self, job: RabbitJob) -> None:
        """Give an unprocessed job back with basic.nack: not a failed delivery (RabbitMQ 4.3 counts basic.reject
        and lost connections toward the delivery limit, which this must not use up)."""
        def give_back() -> None:
            if self._channel is not None and job.generation == self.generation:
                self._channel.basic_nack(job.tag, requeue=True)
                self._look_everywhere()  # requeued without a wake-up note
        if not job.done:
            try:
                self.call(give_back).result(timeout=10)
            except Exception:  # closing the connection requeues it anyway
                pass
        self.call(lambda: self._running.pop(job.request.request_id, None))

    def close(self) -> None:
        """Stop taking jobs; every unanswered job and held delivery goes back to its queue (`before_close`)."""
        self.stop()


def _confirmed_channel(connection: BlockingConnection) -> BlockingChannel:
    """A channel for answers and dead letters: each publish returns once the broker confirmed it."""
    channel = connection.channel()
    channel.confirm_delivery()
    return channel


def _as_failure(response: SoundResponse, error: MessageError) -> SoundResponse:
    """`response` turned into the error `error` (no audio), routed the same way."""
    return replace(response, ok=False, audio=None, model_id="", seed=None, timings={}, metadata={},
                   error_code=error.code, error_message=error.message)

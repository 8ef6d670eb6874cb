"""Queue declarations shared by clients and workers (arguments must never change: RabbitMQ refuses a
redeclaration with other arguments)."""
from __future__ import annotations

import logging
import re
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from tagcore.errors import MessageError

from .settings import RabbitSettings

log = logging.getLogger(__name__)

REQUEST_QUEUE_ARGS = {"x-queue-type": "quorum"}
"""Quorum queues: replicated when the broker is a cluster, and they count deliveries (x-delivery-count),
which is how a request that keeps killing workers is recognised."""

PERSISTENT = 2
PRIORITIES = 10
"""Request priorities 0 (lowest) to 9, one quorum queue each (quorum queues have no message priorities before
RabbitMQ 4): a free worker takes the oldest request of the highest priority that has one."""

CATALOG_QUEUE_ARGS = {"x-queue-type": "stream", "x-max-length-bytes": 16 * 1024 * 1024,
                      "x-stream-max-segment-size-bytes": 1024 * 1024}
"""A stream keeps what workers announced for readers that start later; the oldest segments (1 MiB each) go once
it holds over 16 MiB, thousands of announcements."""

DEAD_LETTER_QUEUE_ARGS = {"x-max-length": 10_000, "x-max-length-bytes": 1024 * 1024 * 1024}
"""Parked messages wait for an operator, and nothing else reads them: a flood of garbage must not fill the
broker's disk (a disk alarm blocks every publisher), so beyond 10 000 messages or 1 GiB the oldest go."""

_OVERSIZE = re.compile(r"message size (\d+) is larger than (?:configured )?max size (\d+)")

_warned: set[str] = set()
"""Queues whose arguments differ from ours, already reported once by this process."""


def request_queue_arguments(settings: RabbitSettings) -> dict[str, object]:
    """Quorum, the consumer timeout, and the dead-letter queue as the target of what the broker gives up on:
    RabbitMQ 4 drops a message after 20 failed deliveries (its default delivery-limit) unless the queue names a
    dead-letter target. A worker answers a request after `max_attempts` failed ones (at most 18), before that;
    the target catches whatever else it might be (a lower delivery-limit set by a policy)."""
    return {**REQUEST_QUEUE_ARGS, "x-consumer-timeout": int(settings.consumer_timeout * 1000),
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": settings.dead_letter_queue}


def declare_queue(channel: BlockingChannel, name: str, arguments: dict[str, object] | None) -> Any:
    """Declare durable `name` on a short-lived channel of `channel`'s connection (the broker closes a channel whose
    declaration it refuses) and return the broker's Queue.DeclareOk (ready messages, consumers). A queue that exists
    with other arguments (declared by an older TAG) is used as it is, with a warning once per process."""
    connection = channel.connection
    scratch = connection.channel()
    try:
        return scratch.queue_declare(name, durable=True, arguments=arguments).method
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != 406:
            raise
        if name not in _warned:
            _warned.add(name)
            log.warning("queue %s exists with other arguments (%s); using it as it is: delete it (once drained) "
                        "to apply %s", name, exc.reply_text, _describe(arguments))
        scratch = connection.channel()
        return scratch.queue_declare(name, passive=True).method
    finally:
        if scratch.is_open:
            scratch.close()


def _describe(arguments: dict[str, object] | None) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in (arguments or {}).items() if key != "x-queue-type")


def declare_request_queue(channel: BlockingChannel, settings: RabbitSettings, backend: str,
                          priority: int = 0) -> Any:
    """Declare one priority's queue of `backend`; returns the Queue.DeclareOk (its name is
    `settings.request_queue_for(backend, priority)`)."""
    return declare_queue(channel, settings.request_queue_for(backend, priority), request_queue_arguments(settings))


def declare_control_exchange(channel: BlockingChannel, settings: RabbitSettings) -> str:
    """The fanout exchange for cancels and wake-up notes: every worker binds a private queue to it, so a cancel
    reaches the worker running the request and every worker that might take it from the queue later."""
    name = settings.control_exchange
    channel.exchange_declare(name, exchange_type="fanout", durable=True)
    return name


REPUBLISHED_HEADER = "x-tag-republished"
"""Header of a request published again by its client after the broker's confirm of an earlier copy was lost: that
copy may be in a queue, or running, already (a first publish, never delivered before, cannot be running)."""

WAKE_QUEUE_HEADER = "x-tag-queue"
"""Header of a wake-up note naming the request queue that just received a request."""


def wake_note(queue: str) -> pika.BasicProperties:
    """A wake-up note for the control exchange: idle workers serving `queue` look into it (and no other)."""
    return pika.BasicProperties(type="wake", headers={WAKE_QUEUE_HEADER: queue})


def woken_queue(properties: pika.BasicProperties) -> str | None:
    """The request queue a wake-up note names; None for a note without one (from an older client), after
    which a worker looks into all its queues."""
    queue = (properties.headers or {}).get(WAKE_QUEUE_HEADER)
    return queue if isinstance(queue, str) else None


def declare_catalog_queue(channel: BlockingChannel, settings: RabbitSettings) -> str:
    channel.queue_declare(settings.catalog_queue, durable=True, arguments=dict(CATALOG_QUEUE_ARGS))
    return settings.catalog_queue


def declare_dead_letter_queue(channel: BlockingChannel, settings: RabbitSettings) -> str:
    declare_queue(channel, settings.dead_letter_queue, dict(DEAD_LETTER_QUEUE_ARGS))
    return settings.dead_letter_queue


def declare_response_queue(channel: BlockingChannel, name: str, *, expiry: float | None = None) -> str:
    """A durable reply queue; a private one (with `expiry`) is deleted after that long without a consumer."""
    arguments = {"x-expires": int(expiry * 1000)} if expiry else None
    channel.queue_declare(name, durable=True, arguments=arguments)
    return name


def dead_letter(channel: BlockingChannel, settings: RabbitSettings, body: bytes, reason: str, *, source: str,
                by: str) -> None:
    """Park an undecodable message with the reason; `channel` must be in confirm mode (waits for the broker)."""
    channel.basic_publish(
        exchange="",
        routing_key=settings.dead_letter_queue,
        body=body,
        properties=pika.BasicProperties(delivery_mode=PERSISTENT, headers={
            "x-tag-error": reason[:1000], "x-tag-source-queue": source, "x-tag-rejected-by": by}),
    )


def delivery_count(properties: pika.BasicProperties) -> int:
    """Failed deliveries of this message so far, from the quorum queue's x-delivery-count. Every version counts a
    consumer that died or lost its connection holding it, and a basic.reject; RabbitMQ 3.x and 4.0-4.2 also count
    a basic.nack (any return), 4.3 no longer does. A worker counts attempts from it before reading the body."""
    return _count(properties, "x-delivery-count")


def acquired_count(properties: pika.BasicProperties) -> int:
    """How often the message was handed out before, failed or given back (x-acquired-count, RabbitMQ 4.3+); 0
    from older brokers, whose x-delivery-count counts every return anyway."""
    return _count(properties, "x-acquired-count")


def _count(properties: pika.BasicProperties, header: str) -> int:
    value = (properties.headers or {}).get(header, 0)
    return value if isinstance(value, int) and value >= 0 else 0


def oversize_limit(reply_text: str) -> int | None:
    """The broker's max_message_size when `reply_text` is its refusal of a larger message (406), else None.
    RabbitMQ 4 takes at most 16 MiB by default (3.x: 128 MiB) and closes the channel that publishes more."""
    found = _OVERSIZE.search(reply_text or "")
    return int(found.group(2)) if found else None


def reason_of(error: Exception) -> str:
    """The dead-letter reason for an exception raised while reading a message."""
    if isinstance(error, MessageError):
        return error.message
    return f"could not be read: {type(error).__name__}: {error}"

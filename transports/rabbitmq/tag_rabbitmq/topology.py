"""Queue declarations shared by clients and workers (arguments must never change: RabbitMQ refuses a
redeclaration with other arguments)."""
from __future__ import annotations

import logging

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


def request_queue_arguments(settings: RabbitSettings) -> dict[str, object]:
    return {**REQUEST_QUEUE_ARGS, "x-consumer-timeout": int(settings.consumer_timeout * 1000)}


def declare_request_queue(channel: BlockingChannel, settings: RabbitSettings, backend: str,
                          priority: int = 0) -> str:
    """Declare one priority's queue (on a short-lived channel of `channel`'s connection, which the broker may
    close): a queue that exists with other arguments, e.g. from before consumer timeouts, is used as it is, with
    a warning."""
    name = settings.request_queue_for(backend, priority)
    connection = channel.connection
    scratch = connection.channel()
    try:
        scratch.queue_declare(name, durable=True, arguments=request_queue_arguments(settings))
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != 406:
            raise
        log.warning("queue %s exists with other arguments (%s); using it as it is: delete it to apply "
                    "x-consumer-timeout=%d s", name, exc.reply_text, settings.consumer_timeout)
        scratch = connection.channel()
        scratch.queue_declare(name, passive=True)
    finally:
        if scratch.is_open:
            scratch.close()
    return name


def declare_control_exchange(channel: BlockingChannel, settings: RabbitSettings) -> str:
    """The fanout exchange for cancels and wake-up notes: every worker binds a private queue to it, so a cancel
    reaches the worker running the request and every worker that might take it from the queue later."""
    name = settings.control_exchange
    channel.exchange_declare(name, exchange_type="fanout", durable=True)
    return name


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
    channel.queue_declare(settings.dead_letter_queue, durable=True)
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
    """How often the broker delivered this message before (quorum queues count it in x-delivery-count)."""
    value = (properties.headers or {}).get("x-delivery-count", 0)
    return value if isinstance(value, int) and value >= 0 else 0


def reason_of(error: Exception) -> str:
    """The dead-letter reason for an exception raised while reading a message."""
    if isinstance(error, MessageError):
        return error.message
    return f"could not be read: {type(error).__name__}: {error}"

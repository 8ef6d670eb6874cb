"""Queue declarations shared by clients and workers (arguments must never change: RabbitMQ refuses a
redeclaration with other arguments)."""
from __future__ import annotations

import pika
from pika.adapters.blocking_connection import BlockingChannel

from tagcore.errors import MessageError

from .settings import RabbitSettings

REQUEST_QUEUE_ARGS = {"x-queue-type": "quorum"}
"""Quorum queues: replicated when the broker is a cluster, and they count deliveries (x-delivery-count),
which is how a request that keeps killing workers is recognised."""

PERSISTENT = 2

CATALOG_QUEUE_ARGS = {"x-queue-type": "stream", "x-max-length-bytes": 16 * 1024 * 1024,
                      "x-stream-max-segment-size-bytes": 1024 * 1024}
"""A stream keeps what workers announced for readers that start later; the oldest segments (1 MiB each) go once
it holds over 16 MiB, thousands of announcements."""


def declare_request_queue(channel: BlockingChannel, settings: RabbitSettings, backend: str) -> str:
    name = settings.request_queue_for(backend)
    channel.queue_declare(name, durable=True, arguments=dict(REQUEST_QUEUE_ARGS))
    return name


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

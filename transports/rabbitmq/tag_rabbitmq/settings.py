"""The transport's settings: `[rabbitmq]` in the config file or TAG_RABBITMQ_* variables, plus the broker URL.

Credentials, virtual host, TLS (`amqps://`) and connection tuning (`?heartbeat=30`) all come from `url` in the
`[broker]` table (TAG_BROKER_URL), which is a Secret and never printed; nothing here is hard-coded.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import pika

from tagcore.config import Config, Secret, settings_from_table
from tagcore.errors import ConfigError

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
MIN_CONSUMER_TIMEOUT = 1800.0
"""RabbitMQ's default consumer timeout (30 minutes): a derived timeout is never shorter."""
MAX_ATTEMPTS = 18
"""RabbitMQ 4's default delivery-limit is 20 failed deliveries: a worker answers a request after max_attempts of
them and parks it unread after max_attempts + 1 (when even answering failed), so this keeps both below the limit."""


@dataclass(frozen=True)
class BrokerSettings:
    """The `[broker]` table: its own section so that the URL keeps its TAG_BROKER_URL variable."""

    url: Secret = Secret("amqp://guest:guest@127.0.0.1:5672/%2F")


@dataclass(frozen=True)
class RabbitSettings:
    request_queue: str = "RequestQueue"
    """Requests for backend B wait in `<request_queue>.<B>` (a durable quorum queue)."""
    response_queue: str = "ResponseQueue"
    """Named clients read `<response_queue>.<name>`; private clients `<response_queue>.private.<random>`.
    An answer whose reply address is missing or not one of these is not published at all (workers log and count
    it): `<response_queue>` itself, where older versions put such answers, has no reader."""
    dead_letter_queue: str = "DeadLetterQueue"
    """Malformed messages, with the reason in the `x-tag-error` header."""
    catalog_queue: str = "Catalog"
    """A stream where workers announce the specs of their backends; frontends read it from the start and follow it."""
    catalog_refresh: float = 2.0
    """Seconds between checks of which announced backends have a live worker (a consumer on their queue)."""
    max_attempts: int = 3
    """Deliveries of one request before it is answered with an error instead of being tried again. At most
    MAX_ATTEMPTS: RabbitMQ 4 gives up on a message itself after 20 failed deliveries (its default delivery-limit),
    and a worker must answer before that."""
    submit_timeout: float = 30.0
    """Seconds `submit` waits for the broker to confirm a request (reconnecting meanwhile) before failing."""
    private_queue_expiry: float = 3600.0
    """Seconds an abandoned private reply queue outlives its client (it survives broker restarts meanwhile)."""
    reconnect_max_delay: float = 10.0
    """Upper bound of the exponential reconnect backoff, in seconds."""
    client_prefetch: int = 16
    consumer_timeout: float = 0.0
    """Seconds a worker may hold a request unanswered before the broker takes it back (queue argument
    x-consumer-timeout, honoured by RabbitMQ 3.12+). 0: sized from the worst case, twice `request_timeout`
    (no answer is useful after that) and never under RabbitMQ's own 30 minutes."""

    @classmethod
    def from_config(cls, config: Config) -> "RabbitSettings":
        settings = settings_from_table(cls, config.section("rabbitmq"), "[rabbitmq]")
        if settings.consumer_timeout < 0:
            raise ConfigError("[rabbitmq] consumer_timeout must be >= 0 seconds (0: derived from request_timeout)")
        if not settings.consumer_timeout:
            worst = max(MIN_CONSUMER_TIMEOUT, 2 * config.request_timeout)
            settings = dataclasses.replace(settings, consumer_timeout=worst)
        for key in ("request_queue", "response_queue", "dead_letter_queue", "catalog_queue"):
            if not _QUEUE_NAME.match(getattr(settings, key)):
                raise ConfigError(f"[rabbitmq] {key} must be 1-200 letters, digits or _.:- characters")
        if not 1 <= settings.max_attempts <= MAX_ATTEMPTS:
            raise ConfigError(f"[rabbitmq] max_attempts must be 1 to {MAX_ATTEMPTS} (RabbitMQ 4 drops or "
                              "dead-letters a request after 20 failed deliveries)")
        if settings.catalog_refresh <= 0:
            raise ConfigError("[rabbitmq] catalog_refresh must be a positive number of seconds")
        return settings

    @property
    def control_exchange(self) -> str:
        """The fanout exchange every worker listens to: cancels, and "wake" notes for new requests."""
        return f"{self.request_queue}.control"

    def request_queue_for(self, backend: str, priority: int = 0) -> str:
        """Priority 0 waits in `<request_queue>.<backend>`, priority p > 0 in `<request_queue>.<backend>.p<p>`."""
        base = f"{self.request_queue}.{backend}"
        return f"{base}.p{priority}" if priority else base

    def presence_queue_for(self, backend: str) -> str:
        """A queue that never holds messages: each worker of `backend` consumes it, so its consumer count is the
        number of workers (workers take requests with basic.get, which no consumer count shows)."""
        return f"{self.request_queue}.{backend}.workers"

    def named_response_queue(self, name: str) -> str:
        if not _QUEUE_NAME.match(name):
            raise ConfigError(f"client name {name!r} must be letters, digits or _.:- characters")
        return f"{self.response_queue}.{name}"

    def accepts_reply_to(self, reply_to: str | None) -> bool:
        """Workers only publish answers to response queues, never to a queue a request merely names."""
        return reply_to is not None and reply_to.startswith(self.response_queue + ".") and bool(
            _QUEUE_NAME.match(reply_to))


def connection_parameters(config: Config) -> pika.URLParameters:
    """pika parameters from the (secret) broker URL; `amqps://` enables TLS with the system's CA store."""
    url = settings_from_table(BrokerSettings, config.section("broker"), "[broker]").url.reveal()
    if not url.startswith(("amqp://", "amqps://")):
        raise ConfigError("[broker] url must start with amqp:// or amqps:// (TAG_BROKER_URL)")
    try:
        params = pika.URLParameters(url)
    except Exception as exc:  # pika raises assorted types for bad query strings
        raise ConfigError(f"[broker] url is not a valid AMQP URL: {type(exc).__name__}") from None
    params.connection_attempts = 1
    params.blocked_connection_timeout = params.blocked_connection_timeout or 60
    return params

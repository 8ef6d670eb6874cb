"""The RabbitMQ transport: frontends and workers on different machines, talking through a broker."""
from __future__ import annotations

from collections.abc import Sequence

from tagcore.config import Config
from tagcore.transport import JobSource, Transport, TransportClient

from .client import RabbitClient
from .jobs import RabbitJobSource
from .settings import RabbitSettings, connection_parameters


class RabbitMQTransport(Transport):
    """Durable per-backend request queues, confirmed persistent messages, redelivery when a worker dies."""

    name = "rabbitmq"
    aliases = ("amqp",)
    description = "RabbitMQ broker (TAG_BROKER_URL): workers on other machines, nothing lost on crashes."

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.settings = RabbitSettings.from_config(config)
        self.params = connection_parameters(config)
        self._open: list[RabbitClient | RabbitJobSource] = []

    def client(self, *, name: str | None = None) -> TransportClient:
        client = RabbitClient(self.params, self.settings, name=name)
        self._open.append(client)
        return client

    def job_source(self, backends: Sequence[str], *, prefetch: int = 1) -> JobSource:
        source = RabbitJobSource(self.params, self.settings, backends, prefetch=prefetch)
        self._open.append(source)
        return source

    def failure(self) -> str | None:
        return next((f"broker connection thread died: {o.failure}" for o in self._open if o.failure), None)

    def close(self) -> None:
        while self._open:
            self._open.pop().close()

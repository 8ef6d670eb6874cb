"""The RabbitMQ transport: frontends and workers on different machines, talking through a broker."""
from __future__ import annotations

import logging
from collections.abc import Sequence

from tagcore.catalog import BackendCatalog
from tagcore.config import Config
from tagcore.spec import BackendSpec
from tagcore.transport import JobSource, Transport, TransportClient

from .catalog import CatalogFollower
from .client import RabbitClient
from .jobs import RabbitJobSource
from .settings import RabbitSettings, connection_parameters

log = logging.getLogger(__name__)


class RabbitMQTransport(Transport):
    """Durable per-backend request queues, confirmed persistent messages, redelivery when a worker dies."""

    name = "rabbitmq"
    aliases = ("amqp",)
    description = "RabbitMQ broker (TAG_BROKER_URL): workers on other machines, nothing lost on crashes."

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.settings = RabbitSettings.from_config(config)
        self.params = connection_parameters(config)
        self._open: list[RabbitClient | RabbitJobSource | CatalogFollower] = []
        self._follower: CatalogFollower | None = None

    def client(self, *, name: str | None = None) -> TransportClient:
        client = RabbitClient(self.params, self.settings, name=name)
        self._open.append(client)
        return client

    def job_source(self, backends: Sequence[BackendSpec], *, prefetch: int = 1) -> JobSource:
        source = RabbitJobSource(self.params, self.settings, backends, prefetch=prefetch)
        self._open.append(source)
        return source

    def catalog(self) -> BackendCatalog:
        """The catalog stream followed live; waits up to `submit_timeout` for what was announced earlier."""
        if self._follower is None:
            self._follower = CatalogFollower(self.params, self.settings, BackendCatalog())
            self._open.append(self._follower)
        if not self._follower.synced.wait(self.settings.submit_timeout):
            log.info("the broker did not deliver the backend catalog within %g s; backends appear as workers "
                     "announce them", self.settings.submit_timeout)
        return self._follower.catalog

    def failure(self) -> str | None:
        return next((f"broker connection thread died: {o.failure}" for o in self._open if o.failure), None)

    def close(self) -> None:
        while self._open:
            self._open.pop().close()

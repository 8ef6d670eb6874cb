"""Frontends: long-running programs (a chat bot, an HTTP server) that turn user input into requests."""
from __future__ import annotations

import abc
import threading
from collections.abc import Mapping
from typing import Any, ClassVar

from .config import Config
from .metrics import Metrics
from .transport import Transport


class Frontend(abc.ABC):
    """Built with the configuration, a transport to submit through and its own settings; `run` blocks."""

    name: ClassVar[str]
    description: ClassVar[str] = ""

    def __init__(self, config: Config, transport: Transport, settings: Mapping[str, Any] | None = None) -> None:
        self.config = config
        self.transport = transport
        self.settings = dict(settings or {})
        self.metrics = Metrics()
        """This frontend's metrics (and its embedded worker's): the HTTP server shows them at /metrics, the bot
        on `--metrics-port`. A frontend adds its transport's collectors once it has a client."""

    @abc.abstractmethod
    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set, then return after a clean shutdown."""

"""Entry point of the RabbitMQ plugin: the transport and the `tag broker` development command."""
from __future__ import annotations

from collections.abc import Callable

import click

from tagcore import hookimpl


@hookimpl
def register_transports(register: Callable[[type], None]) -> None:
    from .transport import RabbitMQTransport

    register(RabbitMQTransport)


@hookimpl
def register_settings(register: Callable[[str, type], None]) -> None:
    from .settings import BrokerSettings, RabbitSettings

    register("broker", BrokerSettings)
    register("rabbitmq", RabbitSettings)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .devbroker import broker_cli

    cli.add_command(broker_cli)

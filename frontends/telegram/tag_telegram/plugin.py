"""Registers the Telegram bot frontend (`tag bot --frontend telegram`)."""
from __future__ import annotations

from collections.abc import Callable

import click

from tagcore import hookimpl


@hookimpl
def register_frontends(register: Callable[[type], None]) -> None:
    from .frontend import TelegramFrontend  # import telebot only when frontends are listed

    register(TelegramFrontend)


@hookimpl
def register_settings(register: Callable[[str, type], None]) -> None:
    from .settings import BotSettings

    register("telegram", BotSettings)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .commands import bot

    cli.add_command(bot)

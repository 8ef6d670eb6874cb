"""Registers the Telegram bot frontend (`tag bot --frontend telegram`)."""
from __future__ import annotations

from tagcore import hookimpl


@hookimpl
def register_frontends(register) -> None:
    from .frontend import TelegramFrontend  # import telebot only when frontends are listed

    register(TelegramFrontend)


@hookimpl
def register_settings(register) -> None:  # type: ignore[no-untyped-def]
    from .settings import BotSettings

    register("telegram", BotSettings)


@hookimpl
def register_commands(cli) -> None:  # type: ignore[no-untyped-def]
    from .commands import bot

    cli.add_command(bot)

"""The "telegram" frontend: wires the bot, the transport client, delivery and the long-polling loop.

Polling is our own loop over getUpdates (not telebot's infinity_polling) so that `stop` is honoured between two
polls, network errors back off instead of spinning, and nothing the library logs or raises can show the token.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping
from typing import Any

import requests
import telebot
from telebot import apihelper, types
from telebot.apihelper import ApiException, ApiTelegramException

from tagcore.runtime import client_catalog
from tagcore.config import Config
from tagcore.errors import ConfigError
from tagcore.frontend import Frontend
from tagcore.requester import Requester
from tagcore.transport import Transport

from . import texts
from .conversation import Conversation
from .delivery import Delivery
from .sender import Redactor, Sender, retry_after
from .sessions import Sessions
from .settings import BotSettings, load_settings
from .store import BotStore, default_store_path

log = logging.getLogger("tag_telegram")
MAX_BACKOFF = 30.0
REDACTED_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "requests")


class TelegramFrontend(Frontend):
    """A Telegram bot: text prompt -> duration keyboard -> queued/progress -> audio with its recipe."""

    name = "telegram"
    description = "Telegram bot (pyTelegramBotAPI, long polling): prompts in, voice notes or audio files out."

    def __init__(self, config: Config, transport: Transport, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(config, transport, settings)
        self.bot_settings: BotSettings = load_settings(config, self.settings)
        self.redactor = Redactor(self.bot_settings.token.reveal())
        self.ready = threading.Event()
        """Set once the bot is polling (tests and embedding programs wait on it)."""

    def run(self, stop: threading.Event) -> None:
        settings = self.bot_settings
        # urllib3 logs request URLs (which carry the token) at DEBUG: redact those loggers too.
        for logger in (log, telebot.logger, *map(logging.getLogger, REDACTED_LOGGERS)):
            if self.redactor not in logger.filters:
                logger.addFilter(self.redactor)
        if settings.api_url:
            base = settings.api_url.rstrip("/")
            # pyTelegramBotAPI declares these module settings as None (its default), though they hold a template.
            apihelper.API_URL = base + "/bot{0}/{1}"  # type: ignore[assignment]
            apihelper.FILE_URL = base + "/file/bot{0}/{1}"  # type: ignore[assignment]
        try:
            bot = telebot.TeleBot(settings.token.reveal(), threaded=True, num_threads=settings.workers)
        except ValueError as exc:
            raise ConfigError(f"the Telegram token is malformed ({exc}); copy it again from @BotFather") from None
        catalog = client_catalog(self.transport, self.config)
        served = tuple(entry.spec.name for entry in catalog.entries() if entry.available)
        if not settings.backends and self.transport.embedded and served:
            # Embedded workers serve only the backends `tag bot -b` loaded: offer exactly those.
            settings = self.bot_settings = dataclasses.replace(settings, backends=served)
        sender = Sender(self.redactor)
        me = self._hello(bot)
        log.info("Telegram bot @%s is up (transport %s)", me.username, self.transport.name)
        store = BotStore(settings.store or default_store_path())
        log.info("the bot's store is %s", store.path)
        sessions = Sessions(settings.rate_limit, settings.rate_window, settings.keep_recipes, store)
        delivery = Delivery(bot, sender, sessions, settings, store)
        client = self.transport.client(name="telegram")
        client.add_listener(delivery.on_event)
        self.metrics.follow(client, catalog)
        requester = Requester(client, catalog, self.config, source="telegram", priority=settings.priority,
                              timeout=settings.request_timeout)
        self.conversation = Conversation(bot, self.config, settings, requester, sessions, delivery, sender)
        self.conversation.register()
        self.delivery = delivery
        delivery.start()
        try:
            self._poll(bot, stop)
        finally:
            bot.stop_bot()
            delivery.stop()
            client.close()
            store.close()
            log.info("Telegram bot stopped")

    def _hello(self, bot: telebot.TeleBot) -> types.User:
        """Check the token (getMe) and register the command list shown in Telegram's menu."""
        try:
            me = bot.get_me()
        except ApiTelegramException as exc:
            if exc.error_code in (401, 404):
                raise ConfigError("Telegram rejected the bot token (401 Unauthorized): check TAG_TELEGRAM_TOKEN"
                                  ) from None
            raise ConfigError(f"Telegram refused getMe: {exc.description}") from None
        except (ApiException, requests.RequestException) as exc:
            raise ConfigError(f"cannot reach the Telegram Bot API: {self.redactor.redact(exc)}") from None
        try:
            bot.set_my_commands([types.BotCommand(name, about) for name, about in texts.COMMANDS])
        except (ApiException, requests.RequestException) as exc:
            log.warning("could not register the command list: %s", self.redactor.redact(exc))
        return me

    def _poll(self, bot: telebot.TeleBot, stop: threading.Event) -> None:
        """Long-poll getUpdates until `stop`; handlers run on telebot's worker threads."""
        offset: int | None = None
        backoff = 1.0
        timeout = self.bot_settings.poll_timeout
        while not stop.is_set():
            try:
                updates = bot.get_updates(offset=offset, timeout=timeout + 10, long_polling_timeout=timeout,
                                          allowed_updates=["message", "callback_query"])
            except ApiTelegramException as exc:
                wait = retry_after(exc)
                if exc.error_code == 401:
                    raise ConfigError("Telegram rejected the bot token while polling (401)") from None
                if exc.error_code == 409:
                    log.error("getUpdates conflict: another instance polls this token, or a webhook is set "
                              "(remove it with deleteWebhook)")
                else:
                    log.warning("getUpdates failed: %s", exc.description)
                stop.wait(wait if wait is not None else backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            except (ApiException, requests.RequestException) as exc:
                log.warning("getUpdates failed, retrying in %g s: %s", backoff, self.redactor.redact(exc))
                stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = 1.0
            self.ready.set()
            if updates:
                offset = updates[-1].update_id + 1
                bot.process_new_updates(updates)

"""Calling the Bot API safely: retry after 429, stop writing to chats that blocked the bot (403), hide the token.

Telegram answers 429 with `parameters.retry_after` when a chat or the bot sends too fast; the message is not lost
if we wait that long and send it again. A 403 means the user blocked the bot (or left the group): every further
message to that chat would fail the same way, so the chat is marked blocked and its pending messages are dropped
until the user writes to the bot again.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from telebot.apihelper import ApiException, ApiTelegramException

log = logging.getLogger("tag_telegram")
T = TypeVar("T")
MAX_ATTEMPTS = 5
MAX_RETRY_AFTER = 120.0
NETWORK_BACKOFF = (1.0, 2.0, 4.0, 8.0)


class ChatBlocked(Exception):
    """The chat refuses messages from the bot (403); nothing more will be sent there for now."""


class Redactor(logging.Filter):
    """Replaces the bot token in log records (request URLs in exception texts carry it)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def redact(self, text: object) -> str:
        text = str(text)
        return text.replace(self.token, "<token>") if self.token else text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.token:
            record.msg = self.redact(record.getMessage())
            record.args = None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


def retry_after(exc: ApiTelegramException) -> float | None:
    """Seconds Telegram asked us to wait, when this is a 429."""
    if exc.error_code != 429:
        return None
    parameters = (exc.result_json or {}).get("parameters") or {}
    return float(parameters.get("retry_after", 1))


class Sender:
    """Runs Bot API calls for one chat with the 429/403/network policy above."""

    def __init__(self, redactor: Redactor, sleep: Callable[[float], Any] = time.sleep) -> None:
        self.redactor = redactor
        self.sleep = sleep
        self._blocked: set[int] = set()
        self._lock = threading.Lock()

    def is_blocked(self, chat_id: int) -> bool:
        with self._lock:
            return chat_id in self._blocked

    def unblock(self, chat_id: int) -> None:
        """The user wrote to the bot again, so the chat accepts messages again."""
        with self._lock:
            self._blocked.discard(chat_id)

    def call(self, chat_id: int, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call `fn(*args, **kwargs)`; raise ChatBlocked for a blocked chat, ApiException for other failures."""
        network_failures = 0
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if self.is_blocked(chat_id):
                raise ChatBlocked(chat_id)
            try:
                return fn(*args, **kwargs)
            except ApiTelegramException as exc:
                wait = retry_after(exc)
                if wait is not None and attempt < MAX_ATTEMPTS:
                    log.info("Telegram asked to slow down (%s to chat %s): retrying in %g s", what, chat_id, wait)
                    self.sleep(min(wait, MAX_RETRY_AFTER) + 0.05)
                    continue
                if exc.error_code == 403:
                    with self._lock:
                        self._blocked.add(chat_id)
                    log.warning("chat %s blocked the bot (%s): dropping its pending messages", chat_id,
                                exc.description)
                    raise ChatBlocked(chat_id) from None
                raise
            except (requests.ConnectionError, requests.Timeout) as exc:
                if network_failures >= len(NETWORK_BACKOFF) or attempt == MAX_ATTEMPTS:
                    raise ApiException(self.redactor.redact(exc), what, None) from None
                log.warning("network error on %s to chat %s, retrying: %s", what, chat_id, self.redactor.redact(exc))
                self.sleep(NETWORK_BACKOFF[network_failures])
                network_failures += 1
        raise AssertionError("unreachable")

"""Delivering progress and results to chats, off the polling thread.

The transport listener commits every answer to the bot's store (store.BotStore; the broker acknowledges an answer
only after the listener returned) and enqueues it; a few delivery threads ("lanes") do the Bot API calls, send
answers from the store and mark them there delivered (with Telegram's message id) or refused for good, so a
restart delivers what was left and nothing twice (store.py walks through each crash point). A chat always maps to
the same lane, so its messages keep their order, while a slow upload or a 429 pause in one chat delays only the
chats that share its lane, never the polling loop. Progress edits are throttled per chat; the final audio (or
error) always goes out. A response whose request context was lost (the bot restarted while a broker kept the
request) is still delivered, by the chat id and details the response carries. A failure that may pass (network,
Telegram 5xx) leaves the answer in the store, to be tried again every RETRY_EVERY seconds.
"""
from __future__ import annotations

import io
import logging
import queue
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

from telebot import TeleBot, types
from telebot.apihelper import ApiException, ApiTelegramException

from tagcore import audio as audio_io
from tagcore.audio_types import Audio
from tagcore.messages import Context, ProgressEvent, SoundResponse
from tagcore.transport import Event

from . import texts
from .sender import ChatBlocked, Sender
from .sessions import Recipe, Sessions
from .settings import BotSettings
from .store import MAX_ATTEMPTS, BotStore

log = logging.getLogger("tag_telegram")
SWEEP_EVERY = 5.0
TIMEOUT_GRACE = 30.0
RETRY_EVERY = 30.0


def reply_context(user_id: int, chat_id: int) -> Context:
    """The bot's part of a request (opaque to the core and the workers): where the answer goes, whose slot it is."""
    return {"user_id": user_id, "chat_id": chat_id}


def _number_in(event: Event, key: str) -> int | None:
    value = event.context.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def chat_of(event: Event) -> int | None:
    """The chat an event belongs to, from its reply context (for answers this bot no longer tracks)."""
    return _number_in(event, "chat_id")


def user_of(event: Event) -> int | None:
    return _number_in(event, "user_id")


@dataclass
class RequestContext:
    """What the bot knows about a request it submitted (lost on restart; responses carry the essentials)."""

    request_id: str
    user_id: int
    chat_id: int
    prompt: str
    duration: float
    backend: str
    seed: int | None
    audio_prompt: Audio | None = None
    options: dict[str, Any] | None = None
    submitted_at: float = 0.0
    status_message_id: int | None = None
    status_text: str = ""


@dataclass(frozen=True)
class _Accepted:
    request_id: str


@dataclass(frozen=True)
class _Expired:
    request_id: str


@dataclass(frozen=True)
class _Stored:
    """An answer committed to the store, to deliver from there."""

    request_id: str


def _refusal(exc: Exception) -> str | None:
    """Why Telegram refused a call for good (a 4xx other than 429), or None when trying again may work."""
    if isinstance(exc, ApiTelegramException) and 400 <= exc.error_code < 500 and exc.error_code != 429:
        return f"{exc.error_code} {exc.description}"
    return None


def result_buttons(request_id: str) -> types.InlineKeyboardMarkup:
    markup = types.InlineKeyboardMarkup()
    markup.row(types.InlineKeyboardButton("🔁 Again", callback_data=f"again:{request_id}"),
               types.InlineKeyboardButton("🎲 Variation", callback_data=f"var:{request_id}"))
    return markup


def file_stem(prompt: str) -> str:
    stem = re.sub(r"[^\w-]+", "_", prompt.lower()).strip("_")[:40]
    return stem or "sound"


class Delivery:
    """Owns the request contexts and the lanes that turn transport events into chat messages."""

    def __init__(self, bot: TeleBot, sender: Sender, sessions: Sessions, settings: BotSettings,
                 store: BotStore) -> None:
        if sessions.store is not store:  # a clip's recipe is committed with its delivery, read back by sessions
            raise ValueError("Delivery and its Sessions must share one BotStore")
        self.bot = bot
        self.sender = sender
        self.sessions = sessions
        self.settings = settings
        self.store = store
        self._retry: dict[str, tuple[int, float]] = {}
        """Answers to try again after a failure that may pass: request id -> (chat id, when)."""
        self._lock = threading.Lock()
        self._contexts: dict[str, RequestContext] = {}
        self._last_edit: dict[int, float] = {}
        self._lanes: list[queue.Queue[Any]] = [queue.Queue() for _ in range(settings.delivery_threads)]
        self._threads: list[threading.Thread] = []
        self._next_sweep = 0.0

    # --- called by the conversation and the transport ------------------------------------------------------
    def track(self, context: RequestContext) -> None:
        """Remember a request before it is submitted (its answer may arrive before `submit` returns)."""
        context.submitted_at = time.monotonic()
        with self._lock:
            self._contexts[context.request_id] = context

    def forget(self, request_id: str) -> None:
        with self._lock:
            self._contexts.pop(request_id, None)

    def accepted(self, request_id: str) -> None:
        """The transport took the request: show a status message unless a queued event already did."""
        chat_id = self._chat_of(request_id, None)
        if chat_id is not None:
            self._lane(chat_id).put(_Accepted(request_id))

    def on_event(self, event: Event) -> None:
        """Transport listener: blocks only for the store's commit of an answer, never raises."""
        chat_id = self._chat_of(event.request_id, chat_of(event))
        if chat_id is None:
            log.warning("dropping a %s for request %s: no chat id", event.kind, event.request_id)
            return
        item: Any = event
        if isinstance(event, SoundResponse):
            with self._lock:
                context = self._contexts.get(event.request_id)
            user_id = context.user_id if context else user_of(event)
            try:
                if not self.store.add_answer(event, chat_id, user_id):
                    log.info("dropped a duplicate answer to request %s (already in the store)", event.request_id)
                    return
                item = _Stored(event.request_id)
            except Exception as exc:  # a broken store must not lose the answer while the bot runs
                log.error("could not store the answer to request %s (%s): delivering it from memory",
                          event.request_id, exc)
        self._lane(chat_id).put(item)

    def in_flight(self) -> int:
        with self._lock:
            return len(self._contexts)

    # --- life cycle --------------------------------------------------------------------------------------
    def start(self) -> None:
        self._resume()
        for index, lane in enumerate(self._lanes):
            thread = threading.Thread(target=self._run_lane, args=(lane, index == 0), daemon=True,
                                      name=f"tag-telegram-delivery-{index}")
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 15.0) -> None:
        """Deliver what is already queued (up to `timeout` seconds), then end the lanes."""
        for lane in self._lanes:
            lane.put(None)
        end = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        self._threads.clear()

    def _resume(self) -> None:
        """Queue every answer the store still holds undelivered (the bot stopped before it went out)."""
        pruned = self.store.prune()
        if pruned:
            log.info("forgot %d answers delivered long ago", pruned)
        for request_id, chat_id, state, attempts in self.store.open_answers():
            if state == "sending" and attempts >= MAX_ATTEMPTS:
                log.error("giving up on the answer to request %s: the bot stopped %d times while delivering it",
                          request_id, attempts)
                self.store.mark_refused(request_id, f"the bot stopped {attempts} times while delivering it")
                continue
            if state == "sending":
                log.warning("sending the answer to request %s again: the bot stopped while it was being sent "
                            "(if Telegram had taken it already, the chat gets it twice)", request_id)
            self._lane(chat_id).put(_Stored(request_id))

    # --- lanes -----------------------------------------------------------------------------------------
    def _chat_of(self, request_id: str, chat_id: int | None) -> int | None:
        if chat_id is not None:
            return chat_id
        with self._lock:
            context = self._contexts.get(request_id)
        return context.chat_id if context else None

    def _lane(self, chat_id: int) -> queue.Queue[Any]:
        return self._lanes[hash(chat_id) % len(self._lanes)]

    def _run_lane(self, lane: queue.Queue[Any], sweeps: bool) -> None:
        while True:
            try:
                item = lane.get(timeout=1.0)
            except queue.Empty:
                item = False
            if item is None:
                return
            if item is not False:
                try:
                    self._handle(item)
                except Exception:  # e.g. the store failed while recording a failure: the lane must go on
                    log.exception("delivery lane failed on %s", type(item).__name__)
            if sweeps and time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + SWEEP_EVERY
                self._sweep()

    def _handle(self, item: Any) -> None:
        context: RequestContext | None = None
        try:
            with self._lock:
                context = self._contexts.get(item.request_id)
            if isinstance(item, _Stored):
                item = self._load(item)
                if item is None:
                    return
            if isinstance(item, SoundResponse):
                self._respond(item, context)
            elif context is None:
                return  # progress of a request this bot no longer tracks: nothing to update
            elif isinstance(item, ProgressEvent):
                self._show_status(context, texts.progress(item))
            elif isinstance(item, _Accepted):
                if context.status_message_id is None:
                    self._show_status(context, texts.QUEUED)
            elif isinstance(item, _Expired):
                self._finish(context.request_id, context.user_id)
                self._replace_status(context, texts.TIMED_OUT.format(prompt=_short(context.prompt)))
        except ChatBlocked:
            chat_id = context.chat_id if context else (chat_of(item) if isinstance(item, Event) else None)
            if isinstance(item, SoundResponse):
                self.store.mark_refused(item.request_id, "403: the chat blocked the bot")
            self._drop_chat(chat_id)
        except Exception as exc:
            log.error("could not deliver %s for request %s: %s", type(item).__name__, item.request_id,
                      self.sender.redactor.redact(exc))
            if isinstance(item, SoundResponse):
                self._failed(item, context, exc)

    def _load(self, item: _Stored) -> SoundResponse | None:
        """The stored answer, unless it was delivered or refused meanwhile (a second queue entry for it)."""
        stored = self.store.answer(item.request_id)
        return stored.response if stored is not None else None

    def _failed(self, response: SoundResponse, context: RequestContext | None, exc: Exception) -> None:
        """Mark a refusal for good in the store, or keep the answer there to try again in RETRY_EVERY s."""
        user_id = user_of(response)
        self._finish(response.request_id, user_id if user_id is not None else (context.user_id if context else None))
        refusal = _refusal(exc)
        if refusal is not None:
            self.store.mark_refused(response.request_id, refusal)
            return
        chat_id = context.chat_id if context else chat_of(response)
        if chat_id is not None and self.store.retry_later(response.request_id):
            with self._lock:
                self._retry[response.request_id] = (chat_id, time.monotonic() + RETRY_EVERY)

    def _sweep(self) -> None:
        """Give up on requests that never got an answer, so their users are not stuck "in flight" forever."""
        limit = self.settings.request_timeout + TIMEOUT_GRACE
        now = time.monotonic()
        with self._lock:
            expired = [c for c in self._contexts.values() if now - c.submitted_at > limit]
        for context in expired:
            self._lane(context.chat_id).put(_Expired(context.request_id))
        with self._lock:
            due = [(rid, chat) for rid, (chat, when) in self._retry.items() if when <= now]
            for request_id, _ in due:
                del self._retry[request_id]
        for request_id, chat_id in due:
            self._lane(chat_id).put(_Stored(request_id))

    def _finish(self, request_id: str, user_id: int | None) -> None:
        with self._lock:
            self._contexts.pop(request_id, None)
        self.sessions.finish(user_id, request_id)

    def _drop_chat(self, chat_id: int | None) -> None:
        """The chat blocked the bot: forget its requests and free its users (they may come back later)."""
        with self._lock:
            dropped = [c for c in self._contexts.values() if c.chat_id == chat_id]
            for context in dropped:
                del self._contexts[context.request_id]
        for context in dropped:
            self.sessions.finish(context.user_id, context.request_id)

    # --- status message --------------------------------------------------------------------------------
    def _show_status(self, context: RequestContext, text: str) -> None:
        """Create or edit the request's status message, at most one edit per progress_interval per chat."""
        if text == context.status_text:
            return
        chat_id = context.chat_id
        now = time.monotonic()
        if context.status_message_id is None:
            message = self.sender.call(chat_id, "sendMessage", self.bot.send_message, chat_id, text)
            context.status_message_id = message.message_id
        else:
            with self._lock:
                if now - self._last_edit.get(chat_id, float("-inf")) < self.settings.progress_interval:
                    return
            try:
                self.sender.call(chat_id, "editMessageText", self.bot.edit_message_text, text, chat_id,
                                 context.status_message_id)
            except ApiTelegramException as exc:  # the user deleted it, or it already says this
                log.debug("status edit in chat %s failed: %s", chat_id, exc.description)
        context.status_text = text
        with self._lock:
            self._last_edit[chat_id] = time.monotonic()

    def _replace_status(self, context: RequestContext | None, text: str, chat_id: int | None = None) -> int:
        """Turn the status message into a final text (or send the text when there is none); its message id."""
        chat_id = context.chat_id if context else chat_id
        if chat_id is None:
            raise ValueError("a final text needs a chat")
        if context is not None and context.status_message_id is not None:
            try:
                self.sender.call(chat_id, "editMessageText", self.bot.edit_message_text, text, chat_id,
                                 context.status_message_id)
                return context.status_message_id
            except ApiTelegramException as exc:
                log.debug("final edit in chat %s failed (%s); sending instead", chat_id, exc.description)
        return int(self.sender.call(chat_id, "sendMessage", self.bot.send_message, chat_id, text).message_id)

    # --- results ---------------------------------------------------------------------------------------
    def _respond(self, response: SoundResponse, context: RequestContext | None) -> None:
        chat_id = context.chat_id if context else chat_of(response)
        user_id = context.user_id if context else user_of(response)
        if chat_id is None:
            return
        if self.sender.is_blocked(chat_id):
            log.info("dropping the answer to request %s: chat %s blocked the bot", response.request_id, chat_id)
            self.store.mark_refused(response.request_id, "403: the chat blocked the bot")
            self._finish(response.request_id, user_id)
            return
        try:
            self.store.mark_sending(response.request_id)
            if not response.ok:
                error = response.error_message or response.error_code or "unknown error"
                prompt = context.prompt if context else response.prompt
                self._finish(response.request_id, user_id)  # free the slot before the user reads the message
                text = (texts.STOPPED.format(prompt=_short(prompt)) if response.error_code == "cancelled"
                        else texts.FAILED.format(prompt=_short(prompt), error=error))
                self.store.mark_delivered(response.request_id, self._replace_status(context, text, chat_id))
                return
            # The sound is made: free the slot before the upload, since the user sees the clip as soon as Telegram
            # has it, before its answer reaches us, and may ask for the next one at once (not "still being made").
            self._finish(response.request_id, user_id)
            message_id = self._send_audio(chat_id, response)
            recipe = Recipe(response.prompt, response.duration, response.backend, response.seed,
                            context.audio_prompt if context else None, context.options if context else None)
            try:
                self.store.mark_delivered(response.request_id, message_id,
                                          (response.request_id, recipe, self.sessions.max_recipes))
            except sqlite3.Error as exc:  # it went out: trying again would send it twice
                log.error("delivered the answer to request %s but could not record it: %s", response.request_id, exc)
            if context is not None and context.status_message_id is not None:
                try:
                    self.sender.call(chat_id, "deleteMessage", self.bot.delete_message, chat_id,
                                     context.status_message_id)
                except ApiTelegramException as exc:
                    log.debug("could not delete status message in chat %s: %s", chat_id, exc.description)
        finally:
            self._finish(response.request_id, user_id)

    def _send_audio(self, chat_id: int, response: SoundResponse) -> int:
        """Send the clip in the configured format, falling back to a voice note when a file is too big; return
        Telegram's message id."""
        assert response.audio is not None
        length = response.audio.duration  # speech may be shorter than the requested duration
        caption = texts.caption(response.prompt, length, response.backend, response.seed)
        duration = max(1, round(length))
        markup = result_buttons(response.request_id)
        fmt = self.settings.audio_format
        try:
            self.sender.call(chat_id, "sendChatAction", self.bot.send_chat_action, chat_id, "upload_voice")
        except ApiTelegramException:
            pass  # the action is cosmetic
        if fmt != "voice":
            data = audio_io.encode(response.audio, fmt)
            if len(data) <= self.settings.max_upload_bytes:
                name = f"{file_stem(response.prompt)}.{fmt}"
                try:
                    message = self.sender.call(
                        chat_id, "sendAudio",
                        lambda: self.bot.send_audio(chat_id, types.InputFile(io.BytesIO(data), file_name=name),
                                                    caption=caption, duration=duration,
                                                    title=response.prompt[:64] or "sound",
                                                    performer=response.backend, reply_markup=markup))
                    return int(message.message_id)
                except ApiException as exc:
                    if getattr(exc, "error_code", None) not in (None, 413):
                        raise
                    log.info("%s upload refused in chat %s (%s); sending a voice note instead", fmt, chat_id,
                             self.sender.redactor.redact(exc))
        data = audio_io.encode(response.audio.mono(), "ogg")  # a voice note is mono Opus
        message = self.sender.call(
            chat_id, "sendVoice",
            lambda: self.bot.send_voice(chat_id, types.InputFile(io.BytesIO(data), file_name="sound.ogg"),
                                        caption=caption, duration=duration, reply_markup=markup))
        return int(message.message_id)


def _short(prompt: str, limit: int = 80) -> str:
    prompt = prompt or "your continuation"
    return prompt if len(prompt) <= limit else prompt[:limit - 1] + "…"

"""The conversation: commands, prompts, the duration keyboard, audio continuation; the buttons are handled
in tag_telegram.buttons, the submission in tag_telegram.submission, what is offered in tag_telegram.offer.

Handlers run on telebot's worker threads. Each one checks the allow-list, answers bad input with a short helpful
reply (validated against the backend's spec, before anything is queued) and never lets an exception escape: a
bug costs one reply, not the bot.
"""
from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import Any

from telebot import TeleBot, types
from telebot.apihelper import ApiException

from tagcore import audio as audio_io
from tagcore.config import Config
from tagcore.errors import InvalidRequest, TagError, UnreadableAudio
from tagcore.requester import Requester

from . import lyrics, settings_menu, texts
from .buttons import Buttons
from .delivery import Delivery
from .offer import Offer
from .people import ChatUser
from .replies import Replies
from .sender import ChatBlocked, Sender
from .sessions import Draft, Sessions
from .settings import BotSettings
from .submission import Submitter

log = logging.getLogger("tag_telegram")
AUDIO_SUFFIXES = (".wav", ".ogg", ".oga", ".opus", ".flac", ".mp3")
OTHER_CONTENT = ["sticker", "photo", "video", "video_note", "animation", "location", "contact", "venue", "dice",
                 "poll", "game", "story"]


def guarded(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Log any exception of a handler (token redacted) and tell the user something went wrong."""
    @functools.wraps(handler)
    def run(self: "Conversation", update: Any) -> None:
        try:
            handler(self, update)
        except ChatBlocked:
            pass
        except Exception as exc:
            log.error("handler %s failed: %s", handler.__name__, self.sender.redactor.redact(repr(exc)))
            message = update.message if isinstance(update, types.CallbackQuery) else update
            if message is None:  # a press on a message too old to reply to
                return
            try:
                self.reply(message.chat.id, texts.INTERNAL)
            except Exception:
                pass
    return run


class Conversation:
    """Registers the handlers on a TeleBot and turns user messages into drafts and requests."""

    def __init__(self, bot: TeleBot, config: Config, settings: BotSettings, requester: Requester,
                 sessions: Sessions, delivery: Delivery, sender: Sender) -> None:
        self.bot = bot
        self.settings = settings
        self.requester = requester
        self.sessions = sessions
        self.sender = sender
        self.replies = Replies(bot, sender)
        self.offer = Offer(config, settings, requester.catalog, sessions, self.replies)
        self.submitter = Submitter(settings, requester, sessions, delivery, self.offer, self.replies,
                                   sender.redactor)
        self.buttons = Buttons(settings, sessions, self.offer, self.submitter, self.replies, sender)

    def register(self) -> None:
        bot = self.bot
        bot.message_handler(commands=["start", "help"])(self.on_help)
        bot.message_handler(commands=["backend"])(self.on_backend)
        bot.message_handler(commands=["settings"])(self.on_settings)
        bot.message_handler(commands=["cancel"])(self.on_cancel)
        bot.message_handler(commands=["song"])(self.on_song)
        bot.message_handler(content_types=["text"])(self.on_text)
        bot.message_handler(content_types=["voice", "audio", "document"])(self.on_file)
        bot.message_handler(content_types=OTHER_CONTENT)(self.on_unsupported)
        bot.callback_query_handler(func=lambda call: True)(self.on_callback)

    # --- helpers -------------------------------------------------------------------------------------
    def reply(self, chat_id: int, text: str, markup: types.InlineKeyboardMarkup | None = None) -> Any:
        return self.replies.send(chat_id, text, markup)

    def _admit(self, message: types.Message) -> bool:
        """The allow-list check; also re-opens a chat that had blocked the bot (the user is back)."""
        self.sender.unblock(message.chat.id)
        user_id = ChatUser.of(message).user_id
        if self.settings.allowed_users and user_id not in self.settings.allowed_users:
            log.info("refused user %s (not in allowed_users)", user_id)
            self.reply(message.chat.id, texts.NOT_ALLOWED.format(user_id=user_id))
            return False
        return True

    def _idle_backend(self, who: ChatUser) -> str | None:
        """The user's generator when a new request may start now; otherwise tell them why and return None."""
        if self.sessions.get(*who).in_flight is not None:
            self.reply(who.chat_id, texts.BUSY)
            return None
        backend = self.offer.backend_of(who)
        if not backend:
            self.reply(who.chat_id, texts.NO_BACKENDS)
        return backend or None

    # --- commands ------------------------------------------------------------------------------------
    @guarded
    def on_help(self, message: types.Message) -> None:
        if not self._admit(message):
            return
        backend = self.offer.backend_of(ChatUser.of(message))
        if not backend:
            self.reply(message.chat.id, texts.NO_BACKENDS)
            return
        low, high = self.offer.duration_range(backend)
        specs = self.offer.specs.values()
        roles = {s.capabilities.audio_prompt_role for s in specs if s.capabilities.audio_prompt}
        self.reply(message.chat.id, texts.help_text(backend, low, high, roles, lyrics.singers(self.offer.specs)))

    @guarded
    def on_backend(self, message: types.Message) -> None:
        if not self._admit(message):
            return
        offered = self.offer.offered
        if not offered:
            self.reply(message.chat.id, texts.NO_BACKENDS)
            return
        current = self.offer.backend_of(ChatUser.of(message))
        markup = types.InlineKeyboardMarkup()
        for name in offered:
            label = ("✅ " if name == current else "") + name + ("" if self.offer.catalog.is_available(name)
                                                                 else texts.NO_WORKER_LABEL)
            markup.row(types.InlineKeyboardButton(label, callback_data=settings_menu.button_data(f"be:{name}")))
        self.reply(message.chat.id, texts.CHOOSE_BACKEND.format(current=current), markup)

    @guarded
    def on_settings(self, message: types.Message) -> None:
        if not self._admit(message):
            return
        who = ChatUser.of(message)
        backend = self.offer.backend_of(who)
        if not backend:
            self.reply(who.chat_id, texts.NO_BACKENDS)
            return
        self.reply(who.chat_id, *self.offer.settings_view(who, backend))

    @guarded
    def on_cancel(self, message: types.Message) -> None:
        if not self._admit(message):
            return
        who = ChatUser.of(message)
        if self.sessions.take_draft(who.user_id):
            self.reply(who.chat_id, texts.CANCELLED)
            return
        running = self.sessions.get(*who).in_flight
        if running is None:
            self.reply(who.chat_id, texts.NOTHING_TO_CANCEL)
            return
        try:
            self.requester.cancel(running)  # the worker answers "cancelled", which frees the slot
        except TagError as exc:
            self.reply(who.chat_id, texts.CANCEL_FAILED.format(error=exc.message))
            return
        self.reply(who.chat_id, texts.STOPPING)

    # --- prompts -------------------------------------------------------------------------------------
    @guarded
    def on_text(self, message: types.Message) -> None:
        if not self._admit(message):
            return
        who = ChatUser.of(message)
        text = (message.text or "").strip()
        state = self.sessions.get(*who)
        if state.draft is not None and state.draft.awaiting_custom and not text.startswith("/"):
            self._custom_duration(who, text)
            return
        if text.startswith("/"):
            self.reply(who.chat_id, texts.UNKNOWN_COMMAND)
            return
        backend = self._idle_backend(who)
        if not backend:
            return
        if not text:
            self.reply(who.chat_id, texts.EMPTY)
            return
        draft = Draft(text)
        option = lyrics.lyrics_option(self.offer.specs[backend])
        if option is not None:  # a backend that sings: a second paragraph is the lyrics
            description, words = lyrics.split_paragraphs(text)
            if words:
                draft = Draft(description, options={option: words})
        self._propose(who, draft, backend)

    @guarded
    def on_song(self, message: types.Message) -> None:
        """`/song description` with the lyrics on the lines below, to a backend that takes lyrics."""
        if not self._admit(message):
            return
        who = ChatUser.of(message)
        current = self._idle_backend(who)
        if not current:
            return
        backend = lyrics.song_backend(current, self.offer.specs)
        option = lyrics.lyrics_option(self.offer.specs[backend]) if backend else None
        if backend is None or option is None:
            self.reply(who.chat_id, texts.NO_SINGER)
            return
        description, words = lyrics.split_command(message.text or "")
        if not description:
            self.reply(who.chat_id, texts.SONG_USAGE)
            return
        self._propose(who, Draft(description, backend=backend, options={option: words}), backend)

    def _propose(self, who: ChatUser, draft: Draft, backend: str) -> None:
        """Check a text draft against its backend; then ask its duration, or say what is wrong."""
        error = self.submitter.check_prompt(draft.prompt, backend, self.offer.draft_options(who, backend, draft))
        if error:
            self.reply(who.chat_id, error)
            return
        self._ask_duration(who, draft, backend)

    def _ask_duration(self, who: ChatUser, draft: Draft, backend: str) -> None:
        low, high = self.offer.duration_range(backend, draft.audio_prompt)
        if self.offer.specs[backend].variable_length:
            # Speech lasts as long as its text: no question, the longest clip allowed is only an upper bound.
            self.submitter.submit(who, draft.prompt, high, backend, audio_prompt=draft.audio_prompt,
                                  options=self.offer.draft_options(who, backend, draft))
            return
        presets = [d for d in self.settings.durations if low <= d <= high] or [low]
        markup = types.InlineKeyboardMarkup()
        markup.row(*(types.InlineKeyboardButton(texts.seconds(d), callback_data=f"dur:{draft.nonce}:{d:g}")
                     for d in presets))
        markup.row(types.InlineKeyboardButton("✏️ Custom", callback_data=f"dur:{draft.nonce}:custom"))
        settings_button = settings_menu.open_button(self.offer.settings_for(who, backend))
        if settings_button is not None:
            markup.row(settings_button)
        self.sessions.set_draft(*who, draft)
        self.reply(who.chat_id, texts.ask_duration(draft.prompt), markup)

    def _custom_duration(self, who: ChatUser, text: str) -> None:
        draft = self.sessions.get(*who).draft
        backend = self.offer.draft_backend(who, draft)
        low, high = self.offer.duration_range(backend, draft.audio_prompt if draft else None)
        try:
            value = float(text.lower().replace(",", ".").removesuffix("s").removesuffix("sec").strip())
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            self.reply(who.chat_id, texts.bad_number(text, low, high))
            return
        if not low <= value <= high:
            self.reply(who.chat_id, texts.out_of_range(value, low, high))
            return
        draft = self.sessions.take_draft(who.user_id, draft.nonce if draft else None)
        if draft is not None:
            self.submitter.submit(who, draft.prompt, value, backend, audio_prompt=draft.audio_prompt,
                                  options=self.offer.draft_options(who, backend, draft))

    # --- audio continuation ----------------------------------------------------------------------------
    @guarded
    def on_file(self, message: types.Message) -> None:
        if not self._admit(message):
            return
        media: types.Voice | types.Audio | types.Document | None = message.voice or message.audio
        if media is None:
            document = message.document
            name = (document.file_name or "").lower() if document is not None else ""
            mime = (document.mime_type or "") if document is not None else ""
            if document is None or not (mime.startswith("audio/") or name.endswith(AUDIO_SUFFIXES)):
                self.reply(message.chat.id, texts.UNSUPPORTED)
                return
            media = document
        self._continue_from(message, media)

    def _continue_from(self, message: types.Message, media: Any) -> None:
        who = ChatUser.of(message)
        backend = self._idle_backend(who)
        if not backend:
            return
        specs = self.offer.specs
        if not specs[backend].capabilities.audio_prompt:
            capable = [n for n, spec in specs.items() if spec.capabilities.audio_prompt]
            self.reply(who.chat_id, texts.no_audio_prompt(backend, capable))
            return
        data = self._download(who.chat_id, media)
        if data is None:
            return
        try:
            clip = audio_io.decode(data)
        except InvalidRequest as exc:
            unreadable = exc.code == UnreadableAudio.code
            self.reply(who.chat_id, texts.UNREADABLE if unreadable else texts.sentence(exc.message))
            return
        prompt = (message.caption or "").strip()
        error = self.submitter.check_prompt(prompt, backend, self.offer.options_for(who, backend), clip)
        if error:
            self.reply(who.chat_id, error)
            return
        self._ask_duration(who, Draft(prompt, clip), backend)

    def _download(self, chat_id: int, media: Any) -> bytes | None:
        """The sent file's bytes, or None once the user was told why not (too big, download failed)."""
        size = media.file_size or 0
        if size > self.settings.max_input_bytes:
            self.reply(chat_id, texts.too_big(size, self.settings.max_input_bytes))
            return None
        try:
            info = self.sender.call(chat_id, "getFile", self.bot.get_file, media.file_id)
            data: bytes = self.sender.call(chat_id, "downloadFile", self.bot.download_file, info.file_path)
        except ApiException as exc:
            self.reply(chat_id, texts.DOWNLOAD_FAILED.format(error=getattr(exc, "description", "download failed")))
            return None
        if len(data) > self.settings.max_input_bytes:
            self.reply(chat_id, texts.too_big(len(data), self.settings.max_input_bytes))
            return None
        return data

    @guarded
    def on_unsupported(self, message: types.Message) -> None:
        if self._admit(message):
            self.reply(message.chat.id, texts.UNSUPPORTED)

    # --- buttons ---------------------------------------------------------------------------------------
    @guarded
    def on_callback(self, call: types.CallbackQuery) -> None:
        notice = None
        try:
            notice = self.buttons.press(call)
        finally:
            self.replies.answer_callback(call, notice)

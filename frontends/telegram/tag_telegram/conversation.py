"""The conversation: commands, prompts, the duration keyboard, backend and settings choice, audio continuation,
buttons.

Handlers run on telebot's worker threads. Each one checks the allow-list, answers bad input with a short helpful
reply (validated against the backend's spec, before anything is queued) and never lets an exception escape: a
bug costs one reply, not the bot.
"""
from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from telebot import TeleBot, types
from telebot.apihelper import ApiException

from tagcore import audio as audio_io
from tagcore.audio_types import Audio
from tagcore.catalog import BackendCatalog
from tagcore.config import Config
from tagcore.errors import EmptyPrompt, InvalidRequest, TagError, UnreadableAudio
from tagcore.fairness import FairShare
from tagcore.messages import SoundRequest
from tagcore.spec import BackendSpec
from tagcore.transport import TransportClient
from tagcore.validation import longest_duration, validate_request

from . import settings_menu, texts
from .chat_options import Setting, choice_options, request_options, settings_of, stale_picks
from .delivery import Delivery, RequestContext, reply_context
from .sender import ChatBlocked, Sender
from .sessions import Draft, Sessions
from .settings import BotSettings

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
            try:
                self.reply(message.chat.id, texts.INTERNAL)
            except Exception:
                pass
    return run


class Conversation:
    """Registers the handlers on a TeleBot and turns user actions into requests."""

    def __init__(self, bot: TeleBot, config: Config, settings: BotSettings, client: TransportClient,
                 catalog: BackendCatalog, sessions: Sessions, delivery: Delivery, sender: Sender) -> None:
        self.bot = bot
        self.config = config
        self.settings = settings
        self.client = client
        self.sessions = sessions
        self.delivery = delivery
        self.sender = sender
        self.fair = FairShare(settings.priority)
        client.add_listener(self.fair.on_event)
        self.catalog = catalog
        catalog.warn_unknown(settings.backends, "[telegram] backends")

    # --- what is offered: read from the live catalog, so a worker that starts later shows up ----------------
    @property
    def specs(self) -> dict[str, BackendSpec]:
        """Offered backends by name: `[telegram] backends` (names or aliases) or every known one."""
        known = {spec.name: spec for spec in self.catalog.specs()}
        if not self.settings.backends:
            return known
        wanted = [self.catalog.canonical(name) for name in self.settings.backends]
        return {name: known[name] for name in dict.fromkeys(wanted) if name in known}

    @property
    def offered(self) -> list[str]:
        return list(self.specs)

    @property
    def default_backend(self) -> str:
        offered = self.offered
        preferred = self.catalog.canonical(self.settings.backend or self.config.default_backend)
        return preferred if preferred in offered else (offered[0] if offered else "")

    def register(self) -> None:
        bot = self.bot
        bot.message_handler(commands=["start", "help"])(self.on_help)
        bot.message_handler(commands=["backend"])(self.on_backend)
        bot.message_handler(commands=["settings"])(self.on_settings)
        bot.message_handler(commands=["cancel"])(self.on_cancel)
        bot.message_handler(content_types=["text"])(self.on_text)
        bot.message_handler(content_types=["voice", "audio", "document"])(self.on_file)
        bot.message_handler(content_types=OTHER_CONTENT)(self.on_unsupported)
        bot.callback_query_handler(func=lambda call: True)(self.on_callback)

    # --- helpers -------------------------------------------------------------------------------------
    def reply(self, chat_id: int, text: str, markup: types.InlineKeyboardMarkup | None = None) -> Any:
        return self.sender.call(chat_id, "sendMessage", self.bot.send_message, chat_id, text, reply_markup=markup)

    def _admit(self, message: types.Message) -> bool:
        """The allow-list check; also re-opens a chat that had blocked the bot (the user is back)."""
        self.sender.unblock(message.chat.id)
        user_id = message.from_user.id
        if self.settings.allowed_users and user_id not in self.settings.allowed_users:
            log.info("refused user %s (not in allowed_users)", user_id)
            self.reply(message.chat.id, texts.NOT_ALLOWED.format(user_id=user_id))
            return False
        return True

    def backend_of(self, user_id: int, chat_id: int) -> str:
        chosen = self.sessions.get(user_id, chat_id).backend
        return chosen if chosen in self.specs else self.default_backend

    def settings_for(self, user_id: int, chat_id: int, backend: str) -> list[Setting]:
        """The choice options of `backend` with this user's values (see chat_options)."""
        return settings_of(self.specs[backend], self.settings.options.get(backend, {}),
                           self.settings.pinned.get(backend, frozenset()),
                           self.sessions.picks(user_id, chat_id, backend))

    def options_for(self, user_id: int, chat_id: int, backend: str) -> dict[str, Any]:
        """The options a request of this user carries. Picks the backend no longer takes are forgotten, and the
        user is told so (once), rather than failing every request."""
        pinned = self.settings.pinned.get(backend, frozenset())
        picks = self.sessions.picks(user_id, chat_id, backend)
        stale = stale_picks(self.specs[backend], pinned, picks)
        if stale:
            self.sessions.forget_picks(user_id, backend, stale)
            self.reply(chat_id, texts.stale_settings(backend, stale))
            picks = {name: value for name, value in picks.items() if name not in stale}
        return request_options(self.specs[backend], self.settings.options.get(backend, {}), pinned, picks)

    def duration_range(self, backend: str, audio_prompt: Audio | None = None) -> tuple[float, float]:
        spec = self.specs[backend]
        low = spec.min_duration
        if audio_prompt is not None and spec.capabilities.continues_audio:
            low = max(low, math.floor(audio_prompt.duration) + 1)
        return low, longest_duration(spec, self.config)

    def _idle_backend(self, message: types.Message) -> str | None:
        """The user's generator when a new request may start now; otherwise tell them why and return None."""
        if self._busy(message):
            return None
        backend = self.backend_of(message.from_user.id, message.chat.id)
        if not backend:
            self.reply(message.chat.id, texts.NO_BACKENDS)
        return backend or None

    def _busy(self, message: types.Message) -> bool:
        if self.sessions.get(message.from_user.id, message.chat.id).in_flight is not None:
            self.reply(message.chat.id, texts.BUSY)
            return True
        return False

    # --- commands ------------------------------------------------------------------------------------
    @guarded
    def on_help(self, message: types.Message) -> None:
        if not self._admit(message):
            return
        backend = self.backend_of(message.from_user.id, message.chat.id)
        if not backend:
            self.reply(message.chat.id, texts.NO_BACKENDS)
            return
        low, high = self.duration_range(backend)
        roles = {s.capabilities.audio_prompt_role for s in self.specs.values() if s.capabilities.audio_prompt}
        self.reply(message.chat.id, texts.help_text(backend, low, high, roles))

    @guarded
    def on_backend(self, message: types.Message) -> None:
        if not self._admit(message):
            return
        if not self.offered:
            self.reply(message.chat.id, texts.NO_BACKENDS)
            return
        current = self.backend_of(message.from_user.id, message.chat.id)
        markup = types.InlineKeyboardMarkup()
        for name in self.offered:
            label = ("✅ " if name == current else "") + name + ("" if self.catalog.is_available(name)
                                                                 else texts.NO_WORKER_LABEL)
            markup.row(types.InlineKeyboardButton(label, callback_data=settings_menu.button_data(f"be:{name}")))
        self.reply(message.chat.id, texts.CHOOSE_BACKEND.format(current=current), markup)

    @guarded
    def on_settings(self, message: types.Message) -> None:
        if not self._admit(message):
            return
        user_id, chat_id = message.from_user.id, message.chat.id
        backend = self.backend_of(user_id, chat_id)
        if not backend:
            self.reply(chat_id, texts.NO_BACKENDS)
            return
        self.reply(chat_id, *self._settings_view(user_id, chat_id, backend))

    def _settings_view(self, user_id: int, chat_id: int, backend: str,
                       heading: str = "") -> tuple[str, types.InlineKeyboardMarkup | None]:
        """The /settings message of `backend` for this user: its text and value buttons."""
        current = self.settings_for(user_id, chat_id, backend)
        text = texts.settings_menu(backend, current)
        return (f"{heading}\n{text}" if heading else text), settings_menu.keyboard(backend, current)

    @guarded
    def on_cancel(self, message: types.Message) -> None:
        if not self._admit(message):
            return
        draft = self.sessions.take_draft(message.from_user.id)
        if draft:
            self.reply(message.chat.id, texts.CANCELLED)
            return
        running = self.sessions.get(message.from_user.id, message.chat.id).in_flight
        if running is None:
            self.reply(message.chat.id, texts.NOTHING_TO_CANCEL)
            return
        try:
            self.client.cancel(running)  # the worker answers "cancelled", which frees the slot
        except TagError as exc:
            self.reply(message.chat.id, texts.CANCEL_FAILED.format(error=exc.message))
            return
        self.reply(message.chat.id, texts.STOPPING)

    # --- prompts -------------------------------------------------------------------------------------
    @guarded
    def on_text(self, message: types.Message) -> None:
        if not self._admit(message):
            return
        user_id, chat_id = message.from_user.id, message.chat.id
        text = (message.text or "").strip()
        state = self.sessions.get(user_id, chat_id)
        if state.draft is not None and state.draft.awaiting_custom and not text.startswith("/"):
            self._custom_duration(message, text)
            return
        if text.startswith("/"):
            self.reply(chat_id, texts.UNKNOWN_COMMAND)
            return
        backend = self._idle_backend(message)
        if not backend:
            return
        if not text:
            self.reply(chat_id, texts.EMPTY)
            return
        error = self._check_prompt(text, backend, self.options_for(user_id, chat_id, backend))
        if error:
            self.reply(chat_id, error)
            return
        self._ask_duration(chat_id, user_id, Draft(text), backend)

    def _check_prompt(self, prompt: str, backend: str, options: dict[str, Any],
                      audio_prompt: Audio | None = None) -> str | None:
        """Validate the prompt alone (with a duration the backend accepts) so problems show before the keyboard."""
        low, high = self.duration_range(backend, audio_prompt)
        if low > high:
            return (f"That audio is {audio_prompt.duration:.1f} s long; {backend} can continue clips shorter than "
                    f"{high:g} s. Send a shorter one.") if audio_prompt is not None else texts.NO_BACKENDS
        trial = SoundRequest(prompt=prompt, duration=high, backend=backend, audio_prompt=audio_prompt,
                             options=options)
        try:
            validate_request(trial, self.specs[backend], self.config)
        except InvalidRequest as exc:
            if exc.code != EmptyPrompt.code:
                return texts.sentence(exc.message)
            return texts.VOICE_NEEDS_TEXT if audio_prompt is not None else texts.EMPTY
        return None

    def _ask_duration(self, chat_id: int, user_id: int, draft: Draft, backend: str) -> None:
        low, high = self.duration_range(backend, draft.audio_prompt)
        if self.specs[backend].variable_length:
            # Speech lasts as long as its text: no question, the longest clip allowed is only an upper bound.
            self.submit(user_id, chat_id, draft.prompt, high, backend, audio_prompt=draft.audio_prompt)
            return
        presets = [d for d in self.settings.durations if low <= d <= high] or [low]
        markup = types.InlineKeyboardMarkup()
        markup.row(*(types.InlineKeyboardButton(texts.seconds(d), callback_data=f"dur:{draft.nonce}:{d:g}")
                     for d in presets))
        markup.row(types.InlineKeyboardButton("✏️ Custom", callback_data=f"dur:{draft.nonce}:custom"))
        settings_button = settings_menu.open_button(self.settings_for(user_id, chat_id, backend))
        if settings_button is not None:
            markup.row(settings_button)
        self.sessions.set_draft(user_id, chat_id, draft)
        self.reply(chat_id, texts.ask_duration(draft.prompt), markup)

    def _custom_duration(self, message: types.Message, text: str) -> None:
        user_id, chat_id = message.from_user.id, message.chat.id
        state = self.sessions.get(user_id, chat_id)
        draft = state.draft
        backend = self.backend_of(user_id, chat_id)
        low, high = self.duration_range(backend, draft.audio_prompt if draft else None)
        try:
            value = float(text.lower().replace(",", ".").removesuffix("s").removesuffix("sec").strip())
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            self.reply(chat_id, texts.bad_number(text, low, high))
            return
        if not low <= value <= high:
            self.reply(chat_id, texts.out_of_range(value, low, high))
            return
        draft = self.sessions.take_draft(user_id, draft.nonce if draft else None)
        if draft is not None:
            self.submit(user_id, chat_id, draft.prompt, value, backend, audio_prompt=draft.audio_prompt)

    # --- audio continuation ----------------------------------------------------------------------------
    @guarded
    def on_file(self, message: types.Message) -> None:
        if not self._admit(message):
            return
        media = message.voice or message.audio
        if media is None:
            document = message.document
            name = (document.file_name or "").lower()
            if not ((document.mime_type or "").startswith("audio/") or name.endswith(AUDIO_SUFFIXES)):
                self.reply(message.chat.id, texts.UNSUPPORTED)
                return
            media = document
        self._continue_from(message, media)

    def _continue_from(self, message: types.Message, media: Any) -> None:
        user_id, chat_id = message.from_user.id, message.chat.id
        backend = self._idle_backend(message)
        if not backend:
            return
        specs = self.specs
        if not specs[backend].capabilities.audio_prompt:
            capable = [n for n, spec in specs.items() if spec.capabilities.audio_prompt]
            self.reply(chat_id, texts.no_audio_prompt(backend, capable))
            return
        size = media.file_size or 0
        if size > self.settings.max_input_bytes:
            self.reply(chat_id, texts.too_big(size, self.settings.max_input_bytes))
            return
        try:
            info = self.sender.call(chat_id, "getFile", self.bot.get_file, media.file_id)
            data = self.sender.call(chat_id, "downloadFile", self.bot.download_file, info.file_path)
        except ApiException as exc:
            self.reply(chat_id, texts.DOWNLOAD_FAILED.format(error=getattr(exc, "description", "download failed")))
            return
        if len(data) > self.settings.max_input_bytes:
            self.reply(chat_id, texts.too_big(len(data), self.settings.max_input_bytes))
            return
        try:
            clip = audio_io.decode(data)
        except InvalidRequest as exc:
            unreadable = exc.code == UnreadableAudio.code
            self.reply(chat_id, texts.UNREADABLE if unreadable else texts.sentence(exc.message))
            return
        prompt = (message.caption or "").strip()
        error = self._check_prompt(prompt, backend, self.options_for(user_id, chat_id, backend), clip)
        if error:
            self.reply(chat_id, error)
            return
        self._ask_duration(chat_id, user_id, Draft(prompt, clip), backend)

    @guarded
    def on_unsupported(self, message: types.Message) -> None:
        if self._admit(message):
            self.reply(message.chat.id, texts.UNSUPPORTED)

    # --- buttons ---------------------------------------------------------------------------------------
    @guarded
    def on_callback(self, call: types.CallbackQuery) -> None:
        notice = None
        try:
            notice = self._callback(call)
        finally:
            chat_id = call.message.chat.id if call.message else call.from_user.id
            try:
                self.sender.call(chat_id, "answerCallbackQuery", self.bot.answer_callback_query, call.id,
                                 text=notice, show_alert=bool(notice))
            except ApiException as exc:  # too late to answer (over 15 min): harmless
                log.debug("answerCallbackQuery failed: %s", getattr(exc, "description", exc))

    def _callback(self, call: types.CallbackQuery) -> str | None:
        """Handle a button press; return an alert text for the user, or None."""
        user_id = call.from_user.id
        if call.message is None:
            return texts.EXPIRED
        chat_id = call.message.chat.id
        self.sender.unblock(chat_id)
        if self.settings.allowed_users and user_id not in self.settings.allowed_users:
            return texts.NOT_ALLOWED.format(user_id=user_id)
        kind, _, rest = (call.data or "").partition(":")
        if kind == "dur":
            nonce, _, value = rest.partition(":")
            return self._pick_duration(call, user_id, chat_id, nonce, value)
        if kind == "be":
            backend = settings_menu.named_by(call.data or "", [name for name in self.offered if name in self.specs],
                                             lambda name: settings_menu.button_data(f"be:{name}"))
            if backend is None:
                return texts.UNKNOWN_BACKEND
            self.sessions.set_backend(user_id, chat_id, backend)
            chosen = texts.BACKEND_SET.format(backend=backend)
            if choice_options(self.specs[backend]):  # show what can be set for it right away
                self._settle(call, *self._settings_view(user_id, chat_id, backend, chosen))
            else:
                self._settle(call, chosen)
            return None
        if kind == settings_menu.OPEN:
            backend = self.backend_of(user_id, chat_id)
            if not backend:
                return texts.NO_BACKENDS
            self.reply(chat_id, *self._settings_view(user_id, chat_id, backend))
            return None
        if kind == settings_menu.PICK:
            picked = settings_menu.parse_pick(rest, self.specs)
            if picked is None:
                return texts.EXPIRED
            backend, option, value = picked
            if option.name in self.settings.pinned.get(backend, frozenset()):
                return texts.PINNED_SETTING.format(option=option.name)
            self.sessions.pick(user_id, chat_id, backend, option.name, value)
            self._settle(call, *self._settings_view(user_id, chat_id, backend))
            return None
        if kind in ("again", "var"):
            recipe = self.sessions.recipe(rest)
            if recipe is None:
                return texts.EXPIRED
            seed = recipe.seed if kind == "again" else None
            return self.submit(user_id, chat_id, recipe.prompt, recipe.duration, recipe.backend, seed=seed,
                               audio_prompt=recipe.audio_prompt, options=recipe.options, quiet=True)
        return texts.EXPIRED

    def _pick_duration(self, call: types.CallbackQuery, user_id: int, chat_id: int, nonce: str,
                       value: str) -> str | None:
        state = self.sessions.get(user_id, chat_id)
        if state.draft is None or state.draft.nonce != nonce:
            return texts.EXPIRED
        backend = self.backend_of(user_id, chat_id)
        if value == "custom":
            state.draft.awaiting_custom = True
            low, high = self.duration_range(backend, state.draft.audio_prompt)
            self._settle(call, texts.ask_custom(low, high))
            return None
        draft = self.sessions.take_draft(user_id, nonce)
        if draft is None:  # a double tap: the first press already took it
            return None
        try:
            duration = float(value)
        except ValueError:
            return texts.EXPIRED
        self._settle(call, texts.chosen(draft.prompt, duration))
        return self.submit(user_id, chat_id, draft.prompt, duration, backend, audio_prompt=draft.audio_prompt,
                           quiet=True)

    def _settle(self, call: types.CallbackQuery, text: str, markup: types.InlineKeyboardMarkup | None = None) -> None:
        """Replace a keyboard message's text and buttons (without `markup` the buttons go, so they cannot be
        pressed twice)."""
        try:
            self.sender.call(call.message.chat.id, "editMessageText", self.bot.edit_message_text, text,
                             call.message.chat.id, call.message.message_id, reply_markup=markup)
        except ApiException as exc:
            log.debug("could not settle keyboard message: %s", getattr(exc, "description", exc))

    # --- submission ------------------------------------------------------------------------------------
    def submit(self, user_id: int, chat_id: int, prompt: str, duration: float, backend: str, *,
               seed: int | None = None, audio_prompt: Audio | None = None, options: dict[str, Any] | None = None,
               quiet: bool = False) -> str | None:
        """Validate, claim the user's slot and budget, and submit. `options`: those of a clip being repeated
        (default: the user's current ones). Problems are replied in the chat, or returned (when `quiet`, for a
        button press) to be shown as an alert."""
        def problem(text: str) -> str | None:
            if quiet:
                return text
            self.reply(chat_id, text)
            return None

        spec = self.specs.get(backend)
        if spec is None:
            return problem(texts.UNKNOWN_BACKEND)
        if options is None:
            options = self.options_for(user_id, chat_id, backend)
        request = SoundRequest(prompt=prompt, duration=duration, backend=backend, seed=seed,
                               options=dict(options), audio_prompt=audio_prompt,
                               context=reply_context(chat_id, user_id), client="telegram",
                               deadline=time.time() + self.settings.request_timeout)
        try:
            validate_request(request, spec, self.config)
        except InvalidRequest as exc:
            return problem(texts.sentence(exc.message))
        verdict, wait = self.sessions.begin(user_id, chat_id, request.request_id)
        if verdict == "busy":
            return problem(texts.BUSY)
        if verdict == "rate":
            return problem(texts.rate_limited(wait, self.settings.rate_limit, self.settings.rate_window))
        self.delivery.track(RequestContext(request.request_id, chat_id, user_id, prompt, duration, backend, seed,
                                           audio_prompt, request.options))
        self.fair.assign(request, f"telegram:{user_id}")
        try:
            self.client.submit(request)
        except Exception as exc:
            self.fair.release(request.request_id)
            self.delivery.forget(request.request_id)
            self.sessions.refund(user_id, request.request_id)
            error = exc.message if isinstance(exc, TagError) else type(exc).__name__
            log.error("could not submit request %s: %s", request.request_id, self.sender.redactor.redact(error))
            return problem(texts.SUBMIT_FAILED.format(error=error))
        log.info("user %s queued request %s (%s, %g s)", user_id, request.request_id, backend, duration)
        self.delivery.accepted(request.request_id)
        return None

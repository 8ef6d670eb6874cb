"""The bot's buttons: durations, backend choice, /settings values, "again" and "variation" under a clip."""
from __future__ import annotations

from telebot import types

from . import settings_menu, texts
from .chat_options import choice_options
from .offer import Offer
from .people import ChatUser
from .replies import Replies
from .sender import Sender
from .sessions import Sessions
from .settings import BotSettings
from .submission import Submitter


class Buttons:
    """Handles button presses; each returns an alert text for the user, or None."""

    def __init__(self, settings: BotSettings, sessions: Sessions, offer: Offer, submitter: Submitter,
                 replies: Replies, sender: Sender) -> None:
        self.settings = settings
        self.sessions = sessions
        self.offer = offer
        self.submitter = submitter
        self.replies = replies
        self.sender = sender

    def press(self, call: types.CallbackQuery) -> str | None:
        """Handle a button press; return an alert text for the user, or None."""
        if call.message is None:
            return texts.EXPIRED
        who = ChatUser(call.from_user.id, call.message.chat.id)
        self.sender.unblock(who.chat_id)
        if self.settings.allowed_users and who.user_id not in self.settings.allowed_users:
            return texts.NOT_ALLOWED.format(user_id=who.user_id)
        kind, _, rest = (call.data or "").partition(":")
        if kind == "dur":
            nonce, _, value = rest.partition(":")
            return self._pick_duration(call, who, nonce, value)
        if kind == "be":
            return self._choose_backend(call, who)
        if kind == settings_menu.OPEN:
            backend = self.offer.backend_of(who)
            if not backend:
                return texts.NO_BACKENDS
            self.replies.send(who.chat_id, *self.offer.settings_view(who, backend))
            return None
        if kind == settings_menu.PICK:
            return self._pick_setting(call, who, rest)
        if kind in ("again", "var"):
            recipe = self.sessions.recipe(rest)
            if recipe is None:
                return texts.EXPIRED
            seed = recipe.seed if kind == "again" else None
            return self.submitter.submit(who, recipe.prompt, recipe.duration, recipe.backend, seed=seed,
                                         audio_prompt=recipe.audio_prompt, options=recipe.options, quiet=True)
        return texts.EXPIRED

    def _choose_backend(self, call: types.CallbackQuery, who: ChatUser) -> str | None:
        specs = self.offer.specs
        backend = settings_menu.named_by(call.data or "", [name for name in self.offer.offered if name in specs],
                                         lambda name: settings_menu.button_data(f"be:{name}"))
        if backend is None:
            return texts.UNKNOWN_BACKEND
        self.sessions.set_backend(*who, backend)
        chosen = texts.BACKEND_SET.format(backend=backend)
        if choice_options(specs[backend]):  # show what can be set for it right away
            self.replies.settle(call, *self.offer.settings_view(who, backend, chosen))
        else:
            self.replies.settle(call, chosen)
        return None

    def _pick_setting(self, call: types.CallbackQuery, who: ChatUser, rest: str) -> str | None:
        picked = settings_menu.parse_pick(rest, self.offer.specs)
        if picked is None:
            return texts.EXPIRED
        backend, option, value = picked
        if option.name in self.settings.pinned.get(backend, frozenset()):
            return texts.PINNED_SETTING.format(option=option.name)
        self.sessions.pick(*who, backend, option.name, value)
        self.replies.settle(call, *self.offer.settings_view(who, backend))
        return None

    def _pick_duration(self, call: types.CallbackQuery, who: ChatUser, nonce: str, value: str) -> str | None:
        state = self.sessions.get(*who)
        if state.draft is None or state.draft.nonce != nonce:
            return texts.EXPIRED
        backend = self.offer.draft_backend(who, state.draft)
        if value == "custom":
            state.draft.awaiting_custom = True
            low, high = self.offer.duration_range(backend, state.draft.audio_prompt)
            self.replies.settle(call, texts.ask_custom(low, high))
            return None
        draft = self.sessions.take_draft(who.user_id, nonce)
        if draft is None:  # a double tap: the first press already took it
            return None
        try:
            duration = float(value)
        except ValueError:
            return texts.EXPIRED
        self.replies.settle(call, texts.chosen(draft.prompt, duration))
        return self.submitter.submit(who, draft.prompt, duration, backend, audio_prompt=draft.audio_prompt,
                                     options=self.offer.draft_options(who, backend, draft), quiet=True)

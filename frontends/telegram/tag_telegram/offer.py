"""What the bot offers a user: the backends (read from the live catalog, so a worker that starts later shows
up), the user's chosen one, its settings and duration range."""
from __future__ import annotations

import math
from typing import Any

from telebot import types

from tagcore.audio_types import Audio
from tagcore.catalog import BackendCatalog
from tagcore.config import Config
from tagcore.spec import BackendSpec
from tagcore.validation import longest_duration

from . import settings_menu, texts
from .chat_options import Setting, request_options, settings_of, stale_picks
from .people import ChatUser
from .replies import Replies
from .sessions import Draft, Sessions
from .settings import BotSettings


class Offer:
    """The offered backends and each user's choices among them."""

    def __init__(self, config: Config, settings: BotSettings, catalog: BackendCatalog, sessions: Sessions,
                 replies: Replies) -> None:
        self.config = config
        self.settings = settings
        self.catalog = catalog
        self.sessions = sessions
        self.replies = replies
        catalog.warn_unknown(settings.backends, "[telegram] backends")

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

    def backend_of(self, who: ChatUser) -> str:
        chosen = self.sessions.get(*who).backend
        return chosen if chosen in self.specs else self.default_backend

    def settings_for(self, who: ChatUser, backend: str) -> list[Setting]:
        """The choice options of `backend` with this user's values (see chat_options)."""
        return settings_of(self.specs[backend], self.settings.options.get(backend, {}),
                           self.settings.pinned.get(backend, frozenset()), self.sessions.picks(*who, backend))

    def settings_view(self, who: ChatUser, backend: str,
                      heading: str = "") -> tuple[str, types.InlineKeyboardMarkup | None]:
        """The /settings message of `backend` for this user: its text and value buttons."""
        current = self.settings_for(who, backend)
        text = texts.settings_menu(backend, current)
        return (f"{heading}\n{text}" if heading else text), settings_menu.keyboard(backend, current)

    def options_for(self, who: ChatUser, backend: str) -> dict[str, Any]:
        """The options a request of this user carries. Picks the backend no longer takes are forgotten, and the
        user is told so (once), rather than failing every request."""
        pinned = self.settings.pinned.get(backend, frozenset())
        picks = self.sessions.picks(*who, backend)
        stale = stale_picks(self.specs[backend], pinned, picks)
        if stale:
            self.sessions.forget_picks(who.user_id, backend, stale)
            self.replies.send(who.chat_id, texts.stale_settings(backend, stale))
            picks = {name: value for name, value in picks.items() if name not in stale}
        return request_options(self.specs[backend], self.settings.options.get(backend, {}), pinned, picks)

    def draft_backend(self, who: ChatUser, draft: Draft | None) -> str:
        """The backend a draft goes to: its own (a /song's), while still offered, else the user's."""
        if draft is not None and draft.backend in self.specs:
            return draft.backend
        return self.backend_of(who)

    def draft_options(self, who: ChatUser, backend: str, draft: Draft) -> dict[str, Any]:
        """The options a draft's request carries: the user's, with the draft's own (its lyrics) over them."""
        return {**self.options_for(who, backend), **draft.options}

    def duration_range(self, backend: str, audio_prompt: Audio | None = None) -> tuple[float, float]:
        spec = self.specs[backend]
        low = spec.min_duration
        if audio_prompt is not None and spec.capabilities.continues_audio:
            low = max(low, math.floor(audio_prompt.duration) + 1)
        return low, longest_duration(spec, self.config)

"""Per-user conversation state: what a user is composing, what they have in flight, their backend, their
/settings picks and budget.

It is guarded by one lock: Telegram handlers run on several worker threads and responses arrive on delivery
threads, and the "one request in flight per user" rule must hold across all of them. With a store (store.BotStore)
the choices users made (backend, /settings picks) and the recipes behind "again"/"variation" are written through
to it and survive a restart; drafts, the in-flight slot and the budget stay in memory (losing them is harmless:
an answer still reaches its chat, and a user can ask again).
"""
from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tagcore.audio_types import Audio

if TYPE_CHECKING:
    from .store import BotStore


@dataclass
class Draft:
    """A prompt waiting for its duration. `nonce` ties the duration keyboard to this draft only."""

    prompt: str
    audio_prompt: Audio | None = None
    nonce: str = field(default_factory=lambda: secrets.token_hex(4))
    awaiting_custom: bool = False
    backend: str | None = None
    """The backend it goes to when not the user's current one (a /song picks one that takes lyrics)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Request options of this prompt alone (its lyrics), over the user's /settings ones."""


@dataclass(frozen=True)
class Recipe:
    """How a delivered clip was made, kept so "again" and "variation" can repeat it."""

    prompt: str
    duration: float
    backend: str
    seed: int | None
    audio_prompt: Audio | None = None
    options: dict[str, Any] | None = None
    """The request options it was made with (None: unknown, the bot restarted; the chat's current ones apply)."""


@dataclass
class UserState:
    user_id: int
    chat_id: int
    backend: str | None = None
    picks: dict[str, dict[str, str]] = field(default_factory=dict)
    """Backend -> option -> value the user chose in /settings."""
    draft: Draft | None = None
    in_flight: str | None = None
    recent: deque[float] = field(default_factory=deque)


class Sessions:
    """Thread-safe store of UserState plus the recipes of recently delivered clips (kept in `store` when given)."""

    def __init__(self, rate_limit: int, rate_window: float, max_recipes: int = 200,
                 store: "BotStore | None" = None) -> None:
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.max_recipes = max_recipes
        self.store = store
        self._lock = threading.Lock()
        self._users: dict[int, UserState] = {}
        self._recipes: OrderedDict[str, Recipe] = OrderedDict()

    def get(self, user_id: int, chat_id: int) -> UserState:
        with self._lock:
            state = self._users.get(user_id)
            if state is None:
                state = self._users[user_id] = UserState(user_id, chat_id)
                saved = self.store.load_user(user_id) if self.store is not None else None
                if saved is not None:
                    state.backend, state.picks = saved
            state.chat_id = chat_id
            return state

    def _save(self, state: UserState) -> None:
        """Write the user's lasting choices through to the store (called under the lock)."""
        if self.store is not None:
            self.store.save_user(state.user_id, state.chat_id, state.backend, state.picks)

    # --- drafts -----------------------------------------------------------------------------------------
    def set_draft(self, user_id: int, chat_id: int, draft: Draft | None) -> None:
        state = self.get(user_id, chat_id)
        with self._lock:
            state.draft = draft

    def take_draft(self, user_id: int, nonce: str | None = None) -> Draft | None:
        """Remove and return the user's draft (only if its nonce matches, when one is given)."""
        with self._lock:
            state = self._users.get(user_id)
            if state is None or state.draft is None or (nonce is not None and state.draft.nonce != nonce):
                return None
            draft, state.draft = state.draft, None
            return draft

    def set_backend(self, user_id: int, chat_id: int, backend: str) -> None:
        state = self.get(user_id, chat_id)
        with self._lock:
            state.backend = backend
            self._save(state)

    def pick(self, user_id: int, chat_id: int, backend: str, option: str, value: str) -> None:
        state = self.get(user_id, chat_id)
        with self._lock:
            state.picks.setdefault(backend, {})[option] = value
            self._save(state)

    def picks(self, user_id: int, chat_id: int, backend: str) -> dict[str, str]:
        """A copy of the user's picks for `backend`."""
        state = self.get(user_id, chat_id)
        with self._lock:
            return dict(state.picks.get(backend, {}))

    def forget_picks(self, user_id: int, backend: str, options: list[str]) -> None:
        with self._lock:
            state = self._users.get(user_id)
            if state is None:
                return
            for option in options:
                state.picks.get(backend, {}).pop(option, None)
            self._save(state)

    # --- in flight and budget -----------------------------------------------------------------------------
    def begin(self, user_id: int, chat_id: int, request_id: str) -> tuple[str | None, float]:
        """Claim the user's single in-flight slot and one unit of budget, atomically.

        Returns (None, 0) on success, ("busy", 0) when a request is already in flight, or ("rate", seconds until
        the oldest request leaves the window) when the budget is spent.
        """
        state = self.get(user_id, chat_id)
        now = time.monotonic()
        with self._lock:
            if state.in_flight is not None:
                return "busy", 0.0
            while state.recent and now - state.recent[0] >= self.rate_window:
                state.recent.popleft()
            if self.rate_limit and len(state.recent) >= self.rate_limit:
                return "rate", self.rate_window - (now - state.recent[0])
            state.in_flight = request_id
            state.recent.append(now)
            return None, 0.0

    def finish(self, user_id: int | None, request_id: str) -> None:
        """Free the user's slot if `request_id` is what holds it (a late answer must not free a newer one)."""
        if user_id is None:
            return
        with self._lock:
            state = self._users.get(user_id)
            if state is not None and state.in_flight == request_id:
                state.in_flight = None

    def refund(self, user_id: int, request_id: str) -> None:
        """Undo `begin` for a request that never left the bot (submission failed)."""
        with self._lock:
            state = self._users.get(user_id)
            if state is not None and state.in_flight == request_id:
                state.in_flight = None
                if state.recent:
                    state.recent.pop()

    # --- recipes ---------------------------------------------------------------------------------------
    def remember(self, key: str, recipe: Recipe) -> None:
        if self.store is not None:
            self.store.put_recipe(key, recipe, self.max_recipes)
            return
        with self._lock:
            self._recipes[key] = recipe
            self._recipes.move_to_end(key)
            while len(self._recipes) > self.max_recipes:
                self._recipes.popitem(last=False)

    def recipe(self, key: str) -> Recipe | None:
        if self.store is not None:
            return self.store.recipe(key)
        with self._lock:
            return self._recipes.get(key)

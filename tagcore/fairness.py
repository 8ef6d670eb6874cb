"""Fair ordering across users and priorities per request source, computed where requests are made.

A frontend knows who asked (a chat, an API client) and how many of that person's requests are unfinished; the
transport only orders by priority (0-9: RabbitMQ serves the highest non-empty priority queue first, the in-process
transport sorts). So each request's priority is `source boost + FAIR_SPAN - (the user's unfinished requests)`,
never below the boost: a user's first request outranks everyone's second, their second everyone's third, and so
on. Someone with 20 queued jobs therefore delays another user's single job by at most the one job of theirs that
shares its rank (plus what is already running), whatever the number of workers. The boost orders sources
(e.g. the API over the bot) within the same rank and above by up to `MAX_BOOST` ranks.
"""
from __future__ import annotations

import threading

from .messages import SoundRequest, SoundResponse
from .transport import Event

PRIORITY_LEVELS = 10
FAIR_SPAN = 7
"""Ranks given to a user's 1st, 2nd... unfinished request; beyond that they share the lowest rank."""
MAX_BOOST = PRIORITY_LEVELS - 1 - FAIR_SPAN


class FairShare:
    """Assigns request priorities for one frontend; add `on_event` as a transport listener."""

    def __init__(self, boost: int = 0) -> None:
        if not 0 <= boost <= MAX_BOOST:
            raise ValueError(f"a source priority is 0 to {MAX_BOOST}, not {boost}")
        self.boost = boost
        self._lock = threading.Lock()
        self._owner: dict[str, str] = {}
        self._unfinished: dict[str, int] = {}

    def assign(self, request: SoundRequest, user: str) -> None:
        """Set `request.priority` from the user's unfinished requests, and count this one among them."""
        with self._lock:
            if request.request_id in self._owner:
                return
            count = self._unfinished.get(user, 0)
            request.priority = self.boost + max(0, FAIR_SPAN - count)
            self._unfinished[user] = count + 1
            self._owner[request.request_id] = user

    def release(self, request_id: str) -> None:
        """The request finished (or was never sent): it no longer counts against its user."""
        with self._lock:
            user = self._owner.pop(request_id, None)
            if user is None:
                return
            left = self._unfinished[user] - 1
            if left:
                self._unfinished[user] = left
            else:
                del self._unfinished[user]

    def on_event(self, event: Event) -> None:
        if isinstance(event, SoundResponse):
            self.release(event.request_id)

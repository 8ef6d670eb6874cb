"""Waiting for the answer to one's own requests, on any transport (the Requester's waiting room)."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .errors import RequestTimedOut
from .messages import ProgressEvent, SoundRequest, SoundResponse
from .transport import Event, TransportClient


SIGNAL_CHECK_S = 0.2
"""Longest a waiting caller goes without checking for a signal (Ctrl-C) addressed to the process."""


class ResponseWaiter:
    """Collects the answers to requests sent through it, so callers can block on one request.

    Only answers to requests submitted here are kept: a client that shares its transport client with listeners of
    its own (the HTTP job store, the bot's delivery) must not pile up answers that nobody will wait for."""

    def __init__(self, client: TransportClient) -> None:
        self.client = client
        self._cond = threading.Condition()
        self._expected: set[str] = set()
        self._responses: dict[str, SoundResponse] = {}
        self._progress: dict[str, list[Callable[[ProgressEvent], None]]] = {}
        client.add_listener(self._on_event)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, SoundResponse):
            with self._cond:
                if event.request_id in self._expected:
                    self._responses[event.request_id] = event
                    self._cond.notify_all()
            return
        for callback in self._progress.get(event.request_id, []):
            callback(event)

    def submit(self, request: SoundRequest,
               on_progress: Callable[[ProgressEvent], None] | None = None) -> None:
        """Send `request`; its progress events go to `on_progress` until `wait` returns its response."""
        if on_progress is not None:
            self._progress[request.request_id] = [on_progress]
        with self._cond:
            self._expected.add(request.request_id)
        try:
            self.client.submit(request)
        except Exception:  # refused: nothing will answer. A Ctrl-C meanwhile may come after the transport sent
            self.forget(request.request_id)  # it, so its answer (to the cancel that follows) is still awaited
            raise

    def forget(self, request_id: str) -> None:
        """Stop expecting an answer to `request_id` (it was never sent, or nobody will wait for it)."""
        with self._cond:
            self._expected.discard(request_id)
            self._responses.pop(request_id, None)
        self._progress.pop(request_id, None)

    def wait(self, request_id: str, timeout: float) -> SoundResponse:
        """Block until the response to `request_id` arrives; raise RequestTimedOut after `timeout` s (the request
        stays expected, so a later wait, e.g. for a cancel's confirmation, can still see its answer)."""
        end = time.monotonic() + timeout
        try:
            with self._cond:
                while request_id not in self._responses:
                    remaining = end - time.monotonic()
                    if remaining <= 0:
                        raise RequestTimedOut(f"no answer within {timeout:g} s (is a worker running for this "
                                              "backend?)")
                    # In slices: a Ctrl-C that the kernel hands to another thread of the process does not wake
                    # a waiting main thread, which only looks for it when its wait ends (seen: `tag generate`
                    # ignoring SIGINT for its whole timeout).
                    self._cond.wait(min(remaining, SIGNAL_CHECK_S))
                self._expected.discard(request_id)
                return self._responses.pop(request_id)
        finally:
            self._progress.pop(request_id, None)

    def submit_and_wait(
        self,
        request: SoundRequest,
        timeout: float,
        on_progress: Callable[[ProgressEvent], None] | None = None,
    ) -> SoundResponse:
        """Submit `request` (with a deadline of `timeout` from now unless it has one) and wait for its answer."""
        if request.deadline is None:
            request.deadline = time.time() + timeout
        self.submit(request, on_progress)
        return self.wait(request.request_id, timeout)

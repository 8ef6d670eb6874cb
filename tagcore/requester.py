"""The client side of a request, for every frontend: the twin of the worker's `GeneratorService`.

A frontend (the CLI, the HTTP routes, the Telegram bot) is UI code over one `Requester`: it names a backend and
a prompt, and the Requester finds the backend in the live catalog, fills in the default duration, sets the
deadline, validates against the backend's spec, ranks the request among its source's users (tagcore.fairness),
submits it, undoes the frontend's own bookkeeping when the transport refuses it, and, for callers that block,
waits for the answer. One obvious call covers the common case::

    answer = Requester(client, catalog, config, source="cli").generate("rain on a tin roof", duration=5)

Frontends that follow answers themselves (the HTTP job store, the bot's delivery) call `request` and `submit`.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from .audio_types import Audio
from .catalog import BackendCatalog
from .client import ResponseWaiter
from .config import Config
from .errors import SubmitFailed, TagError
from .fairness import FairShare
from .messages import ProgressEvent, SoundRequest, SoundResponse
from .spec import BackendSpec
from .transport import TransportClient
from .validation import default_duration, validate_request

DEFAULT_DURATION = 10.0
"""Seconds of a clip whose request names no duration (kept inside the backend's range; see `default_duration`)."""


class Requester:
    """Builds, validates, ranks, submits and (on request) waits for the requests of one source.

    `source` names the frontend on the wire (`SoundRequest.client`); `priority` is its boost among sources
    (tagcore.fairness); `timeout` is how long an answer is useful, from submission: every request's deadline."""

    def __init__(self, client: TransportClient, catalog: BackendCatalog, config: Config, *, source: str,
                 priority: int = 0, default_duration: float = DEFAULT_DURATION, timeout: float | None = None) -> None:
        self.client = client
        self.catalog = catalog
        self.config = config
        self.source = source
        self.default_duration = default_duration
        self.timeout = timeout if timeout is not None else config.request_timeout
        self.fair = FairShare(priority)
        client.add_listener(self.fair.on_event)  # an answer frees its user's rank
        self._waiter = ResponseWaiter(client)

    # --- building -----------------------------------------------------------------------------------------
    def spec(self, backend: str | BackendSpec | None = None) -> BackendSpec:
        """The spec of a backend name or alias from the live catalog (None: the configured default backend);
        a spec the caller already resolved is taken as it is."""
        if isinstance(backend, BackendSpec):
            return backend
        return self.catalog.resolve(backend or self.config.default_backend)

    def duration_for(self, spec: BackendSpec) -> float:
        """The duration of a request that names none."""
        return default_duration(spec, self.config, self.default_duration)

    def deadline(self, timeout: float | None = None) -> float:
        """The one deadline rule: an answer is useful until `timeout` (default: this source's) after submission."""
        return time.time() + (timeout if timeout is not None else self.timeout)

    @staticmethod
    def start_deadline(start_timeout: float | None) -> float | None:
        """By when a worker must start a request given `start_timeout` seconds from submission (None: any time
        before its deadline)."""
        return None if start_timeout is None else time.time() + start_timeout

    def request(self, prompt: str, *, backend: str | BackendSpec | None = None, duration: float | None = None,
                seed: int | None = None, options: Mapping[str, Any] | None = None, candidates: int = 1,
                negative_prompt: str | None = None, audio_prompt: Audio | None = None,
                context: Mapping[str, Any] | None = None, request_id: str | None = None,
                timeout: float | None = None, start_timeout: float | None = None) -> SoundRequest:
        """A validated request (InvalidRequest says what is wrong), ready for `submit`."""
        spec = self.spec(backend)
        request = SoundRequest(
            prompt=prompt, duration=duration if duration is not None else self.duration_for(spec),
            backend=spec.name, seed=seed, options=dict(options or {}), candidates=candidates,
            negative_prompt=negative_prompt, audio_prompt=audio_prompt, context=dict(context or {}),
            client=self.source, deadline=self.deadline(timeout), start_deadline=self.start_deadline(start_timeout))
        if request_id is not None:
            request.request_id = request_id
        validate_request(request, spec, self.config)
        return request

    # --- sending ------------------------------------------------------------------------------------------
    def submit(self, request: SoundRequest, user: str, *, undo: Callable[[], None] | None = None,
               on_progress: Callable[[ProgressEvent], None] | None = None, awaited: bool = False,
               timeout: float | None = None, start_timeout: float | None = None) -> None:
        """Rank `request` among `user`'s unfinished ones and send it, its deadline (and with `start_timeout`, its
        start deadline) counted from now (a request built before a model loaded does not lose that time). When
        the transport refuses it, the rank is given back, `undo` reverts the caller's own bookkeeping, and
        SubmitFailed says why. `awaited` (or `on_progress`) keeps its answer for `wait`."""
        request.deadline = self.deadline(timeout)
        if start_timeout is not None:
            request.start_deadline = self.start_deadline(start_timeout)
        self.fair.assign(request, user)
        try:
            if awaited or on_progress is not None:
                self._waiter.submit(request, on_progress)
            else:
                self.client.submit(request)
        except Exception as exc:
            self.fair.release(request.request_id)
            if undo is not None:
                undo()
            raise SubmitFailed(exc.message if isinstance(exc, TagError) else type(exc).__name__) from exc

    def wait(self, request_id: str, timeout: float | None = None) -> SoundResponse:
        """The answer to an awaited request; RequestTimedOut after `timeout` (default: this source's) seconds."""
        return self._waiter.wait(request_id, timeout if timeout is not None else self.timeout)

    def cancel(self, request_id: str) -> None:
        """Tell the workers to drop the request (its answer, "cancelled", still comes)."""
        self.client.cancel(request_id)

    def generate(self, prompt: str, *, user: str = "", on_progress: Callable[[ProgressEvent], None] | None = None,
                 **fields: Any) -> SoundResponse:
        """Build, submit and wait: the answer to one request (`fields` as for `request`)."""
        request = self.request(prompt, **fields)
        self.submit(request, user or self.source, on_progress=on_progress, awaited=True, timeout=fields.get("timeout"),
                    start_timeout=fields.get("start_timeout"))
        return self.wait(request.request_id, fields.get("timeout"))

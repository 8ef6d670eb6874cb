"""Turning a user's prompt into a queued request: checked against the backend, the user's slot and budget
claimed, then handed to the Requester (which ranks and submits it, and undoes the claim when it cannot)."""
from __future__ import annotations

import logging
from typing import Any

from tagcore.audio_types import Audio
from tagcore.errors import EmptyPrompt, InvalidRequest, SubmitFailed
from tagcore.requester import Requester

from . import texts
from .delivery import Delivery, RequestContext, reply_context
from .offer import Offer
from .people import ChatUser
from .replies import Replies
from .sender import Redactor
from .sessions import Sessions
from .settings import BotSettings

log = logging.getLogger("tag_telegram")


class Submitter:
    """Checks and submits the requests of the bot's users."""

    def __init__(self, settings: BotSettings, requester: Requester, sessions: Sessions, delivery: Delivery,
                 offer: Offer, replies: Replies, redactor: Redactor) -> None:
        self.settings = settings
        self.requester = requester
        self.sessions = sessions
        self.delivery = delivery
        self.offer = offer
        self.replies = replies
        self.redactor = redactor

    def check_prompt(self, prompt: str, backend: str, options: dict[str, Any],
                     audio_prompt: Audio | None = None) -> str | None:
        """Validate the prompt alone (with a duration the backend accepts) so problems show before the keyboard;
        the problem's text for the user, or None."""
        low, high = self.offer.duration_range(backend, audio_prompt)
        if low > high:
            return (f"That audio is {audio_prompt.duration:.1f} s long; {backend} can continue clips shorter than "
                    f"{high:g} s. Send a shorter one.") if audio_prompt is not None else texts.NO_BACKENDS
        try:
            self.requester.request(prompt, backend=self.offer.specs[backend], duration=high,
                                   audio_prompt=audio_prompt, options=options)
        except InvalidRequest as exc:
            if exc.code != EmptyPrompt.code:
                return texts.sentence(exc.message)
            return texts.VOICE_NEEDS_TEXT if audio_prompt is not None else texts.EMPTY
        return None

    def submit(self, who: ChatUser, prompt: str, duration: float, backend: str, *, seed: int | None = None,
               audio_prompt: Audio | None = None, options: dict[str, Any] | None = None,
               quiet: bool = False) -> str | None:
        """Validate, claim the user's slot and budget, and submit. `options`: those of a clip being repeated
        (default: the user's current ones). Problems are replied in the chat, or returned (when `quiet`, for a
        button press) to be shown as an alert."""
        def problem(text: str) -> str | None:
            if quiet:
                return text
            self.replies.send(who.chat_id, text)
            return None

        spec = self.offer.specs.get(backend)
        if spec is None:
            return problem(texts.UNKNOWN_BACKEND)
        if options is None:
            options = self.offer.options_for(who, backend)
        try:
            request = self.requester.request(prompt, backend=spec, duration=duration, seed=seed, options=options,
                                             audio_prompt=audio_prompt, context=reply_context(*who))
        except InvalidRequest as exc:
            return problem(texts.sentence(exc.message))
        verdict, wait = self.sessions.begin(*who, request.request_id)
        if verdict == "busy":
            return problem(texts.BUSY)
        if verdict == "rate":
            return problem(texts.rate_limited(wait, self.settings.rate_limit, self.settings.rate_window))
        self.delivery.track(RequestContext(request.request_id, user_id=who.user_id, chat_id=who.chat_id,
                                           prompt=prompt, duration=duration, backend=backend, seed=seed,
                                           audio_prompt=audio_prompt, options=request.options))

        def undo() -> None:
            self.delivery.forget(request.request_id)
            self.sessions.refund(who.user_id, request.request_id)

        try:
            self.requester.submit(request, f"telegram:{who.user_id}", undo=undo)
        except SubmitFailed as exc:
            log.error("could not submit request %s: %s", request.request_id, self.redactor.redact(exc.message))
            return problem(texts.SUBMIT_FAILED.format(error=exc.message))
        log.info("user %s queued request %s (%s, %g s)", who.user_id, request.request_id, backend, duration)
        self.delivery.accepted(request.request_id)
        return None

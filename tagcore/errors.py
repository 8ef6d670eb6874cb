"""Errors that carry a stable code and a message meant for the person who made the request.

Every failure that can reach a user (CLI, bot, HTTP, a remote worker's error response) is a `TagError`, so
frontends can show `message` as-is and programs can branch on `code` without parsing text.
"""
from __future__ import annotations


class TagError(Exception):
    """Base error: `code` is machine-readable, `message` is a sentence a user can act on."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidRequest(TagError):
    """The request itself is wrong (empty prompt, absurd duration, bad option value...)."""

    code = "invalid_request"


class UnknownBackend(InvalidRequest):
    code = "unknown_backend"


class UnknownOption(InvalidRequest):
    code = "unknown_option"


class EmptyPrompt(InvalidRequest):
    """No text prompt where the backend needs one (a frontend may ask for it in its own words)."""

    code = "empty_prompt"


class UnreadableAudio(InvalidRequest):
    """An uploaded audio file that no decoder could read."""

    code = "unreadable_audio"


class MessageError(InvalidRequest):
    """A wire message could not be decoded: malformed, wrong version or over a size limit."""

    code = "malformed_message"


class WeightsMissing(TagError):
    """A backend cannot find or read its weights; the message names the file and how to get it."""

    code = "weights_missing"


class GenerationFailed(TagError):
    code = "generation_failed"


class RequestTimedOut(TagError):
    code = "timed_out"


class StartExpired(TagError):
    """The request waited in the queue past its start deadline (the client's `start_timeout`), so it was answered
    without running. Not the asker's mistake: the request was fine, the workers were busy."""

    code = "expired"

    @classmethod
    def after(cls, seconds: float) -> "StartExpired":
        """The error for a request whose start_timeout was `seconds` (one wording for workers and frontends)."""
        return cls(f"the request did not start within its start_timeout of {round(seconds, 1):g} s (no worker was "
                   "free); it was not run")


class SubmitFailed(TagError):
    """The transport refused a request (broker down, queue full): nothing was queued, so nothing will answer."""

    code = "transport_unavailable"


class Cancelled(TagError):
    """The requester cancelled the request; raised by a progress callback to stop a backend between steps."""

    code = "cancelled"


class ConfigError(TagError):
    code = "config_error"


class PluginError(TagError):
    code = "plugin_error"


USER_ERRORS: tuple[type[TagError], ...] = (InvalidRequest, ConfigError, PluginError, WeightsMissing)
"""Mistakes the person asking can fix: the CLI exits 2 for them, 1 for failures."""


def _code_of(code: str | None, roots: tuple[type[TagError], ...]) -> bool:
    pending: list[type[TagError]] = list(roots)
    while pending:
        cls = pending.pop()
        if cls.code == code:
            return True
        pending.extend(cls.__subclasses__())
    return False


def is_user_error_code(code: str | None) -> bool:
    """Whether an error code (e.g. from a remote worker's response) names a USER_ERRORS mistake."""
    return _code_of(code, USER_ERRORS)


def is_invalid_request_code(code: str | None) -> bool:
    """Whether an error code names an InvalidRequest: the request itself was wrong (not the server's setup)."""
    return _code_of(code, (InvalidRequest,))

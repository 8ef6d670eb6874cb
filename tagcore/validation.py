"""Checks a request against the chosen backend's spec and the configured limits.

Used twice on purpose: by clients before submitting (fast, clear feedback) and by the worker on every request it
receives (a remote client may be older, buggy or hostile).
"""
from __future__ import annotations

import math
from typing import Any

from .config import Config
from .errors import EmptyPrompt, InvalidRequest
from .messages import SoundRequest
from .spec import BackendSpec


def longest_duration(backend: BackendSpec, config: Config) -> float:
    """The longest clip a request for `backend` may ask for here: the backend's limit within the configured one."""
    return min(backend.max_duration, config.max_duration)


def default_duration(backend: BackendSpec, config: Config, preferred: float) -> float:
    """The duration of a request that names none: `preferred` kept inside the backend's range, or, for a
    variable-length backend (speech lasts as long as its text), the longest allowed, which is then only a bound."""
    longest = longest_duration(backend, config)
    if backend.variable_length:
        return longest
    return max(backend.min_duration, min(preferred, longest))


def validate_request(request: SoundRequest, backend: BackendSpec, config: Config) -> dict[str, Any]:
    """Raise InvalidRequest for anything wrong; return the request options with defaults filled in.

    `backend` is the spec a worker announced, or the one a client built from the class: a worker's spec may be
    narrower than its class (its limits come from the weights it serves). Rules that need the backend's code
    (`Backend.check_request`) are applied by the worker that runs it."""
    options = backend.resolve_request_options(request.options)
    continues = request.audio_prompt is not None and backend.audio_prompt_role_for(options) == "continuation"
    prompt = request.prompt.strip()
    if not prompt and not (backend.capabilities.audio_prompt and continues):
        raise EmptyPrompt("the prompt is empty: describe the sound you want")
    if len(prompt) > config.max_prompt_chars:
        raise InvalidRequest(f"the prompt is {len(prompt)} characters long; the limit is {config.max_prompt_chars}")
    longest = longest_duration(backend, config)
    duration = request.duration
    if not isinstance(duration, (int, float)) or not math.isfinite(duration):
        raise InvalidRequest("the duration must be a number of seconds")
    if not backend.min_duration <= duration <= longest:
        raise InvalidRequest(
            f"duration {duration:g} s is out of range: {backend.name} makes {backend.min_duration:g} to {longest:g} s")
    if request.candidates < 1 or request.candidates > config.max_candidates:
        raise InvalidRequest(f"candidates must be between 1 and {config.max_candidates}")
    if request.candidates > 1 and not backend.capabilities.candidates:
        raise InvalidRequest(f"{backend.name} cannot generate several candidates")
    if request.audio_prompt is not None:
        if not backend.capabilities.audio_prompt:
            raise InvalidRequest(f"{backend.name} does not take an audio prompt")
        capabilities = backend.capabilities
        if request.audio_prompt.duration > capabilities.max_audio_prompt:
            raise InvalidRequest(
                f"the audio prompt is {request.audio_prompt.duration:.1f} s long; {backend.name} takes at most "
                f"{capabilities.max_audio_prompt:g} s")
        if continues and request.audio_prompt.duration >= duration:
            raise InvalidRequest(
                f"the audio prompt is {request.audio_prompt.duration:.1f} s long; it must be shorter than the "
                f"requested {duration:g} s")
    if request.negative_prompt and not backend.capabilities.negative_prompt:
        raise InvalidRequest(f"{backend.name} does not take a negative prompt")
    if request.seed is not None and not 0 <= request.seed <= 2**31 - 1:
        raise InvalidRequest("the seed must be between 0 and 2147483647")
    return options

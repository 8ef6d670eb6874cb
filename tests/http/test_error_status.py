"""Error codes map to HTTP statuses in one place: a worker's invalid-request refusal is a 400 on every route."""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import openai
import pytest

from tag_http.errors import status_for
from tag_testkit.tone import VoiceToneBackend
from tagcore import GenerationItem, GenerationResult, hookimpl, plugins
from tagcore.errors import EmptyPrompt, GenerationFailed, InvalidRequest, TagError, UnknownOption


class PickySpeech(VoiceToneBackend):
    """Speech that only its worker can refuse: the client-side checks pass, the backend says what is wrong."""

    name = "picky_speech"
    aliases = ()

    def generate_batch(self, items: Sequence[GenerationItem], duration: float, *, options: Mapping[str, Any],
                       progress=None) -> list[GenerationResult]:  # type: ignore[no-untyped-def]
        if items[0].prompt.startswith("mumble"):
            raise EmptyPrompt("there are no words in a mumble")
        if items[0].prompt.startswith("crash"):
            raise GenerationFailed("the vocal cords snapped")
        return super().generate_batch(items, duration, options=options, progress=progress)


class _Plugin:
    @hookimpl
    def register_backends(self, register) -> None:  # type: ignore[no-untyped-def]
        register(PickySpeech)


@pytest.fixture(scope="module")
def picky_server(make_server_module: Any) -> Iterator[Any]:
    plugins.register_plugin(_Plugin(), name="http-test-picky")
    try:
        with make_server_module({"backends": "picky_speech", "rate_limit": 600, "rate_burst": 200},
                                serve=("picky_speech",)) as srv:
            yield srv
    finally:
        plugins.unregister_plugin("http-test-picky")


def test_a_worker_refusing_a_speech_request_with_any_invalid_request_code_is_a_400(picky_server: Any) -> None:
    oai = openai.OpenAI(api_key=picky_server.key, base_url=f"{picky_server.url}/v1", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="no words in a mumble") as caught:
        oai.audio.speech.create(model="picky_speech", input="mumble mumble", voice="alloy", response_format="wav")
    assert caught.value.status_code == 400 and caught.value.body["code"] == "empty_prompt"
    with pytest.raises(openai.InternalServerError, match="vocal cords"):
        oai.audio.speech.create(model="picky_speech", input="crash now", voice="alloy", response_format="wav")
    ok = oai.audio.speech.create(model="picky_speech", input="hello there", voice="alloy", response_format="wav")
    assert ok.content[:4] == b"RIFF"


@pytest.mark.parametrize("code, error, status", [
    ("invalid_request", None, 400), ("empty_prompt", None, 400), ("unknown_option", None, 400),
    ("unreadable_audio", None, 400), ("timed_out", None, 504), ("generation_failed", None, 500),
    ("weights_missing", None, 500), (None, None, 500),
    ("not_speech", InvalidRequest("x", code="not_speech"), 400), ("x", TagError("x", code="x"), 500),
    (UnknownOption.code, UnknownOption("x"), 400),
])
def test_status_for_error_codes(code: str | None, error: TagError | None, status: int) -> None:
    assert status_for(code, error) == status

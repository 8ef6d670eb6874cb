"""Request validation: what an audio prompt may be depends on the role the backend gives it."""
import numpy as np
import pytest

from tag_testkit.tone import ToneBackend, VoiceToneBackend as VoiceTone
from tagcore import Audio, Capabilities, Option
from tagcore.backend import AUDIO_ROLE_OPTION
from tagcore.config import Config
from tagcore.errors import InvalidRequest
from tagcore.messages import SoundRequest
from tagcore.validation import validate_request


def clip(seconds: float) -> Audio:
    return Audio(np.zeros((1, int(16000 * seconds)), np.float32), 16000)


def request(backend: str, duration: float, prompt_seconds: float) -> SoundRequest:
    return SoundRequest(prompt="hello", duration=duration, backend=backend, audio_prompt=clip(prompt_seconds))


def test_continuation_prompt_must_be_shorter_than_the_duration():
    validate_request(request("tone", 5, 4.5), ToneBackend.spec({}), Config())
    with pytest.raises(InvalidRequest, match="shorter than the requested 5 s"):
        validate_request(request("tone", 5, 5), ToneBackend.spec({}), Config())


def test_voice_sample_may_be_longer_than_the_clip_but_not_than_the_backend_limit():
    validate_request(request("voice_tone", 3, 20), VoiceTone.spec({}), Config())
    with pytest.raises(InvalidRequest, match="voice_tone takes at most 30 s"):
        validate_request(request("voice_tone", 3, 31), VoiceTone.spec({}), Config())


def test_capabilities_refuse_an_unknown_role_and_describe_themselves():
    with pytest.raises(ValueError, match="audio_prompt_role"):
        Capabilities(audio_prompt=True, audio_prompt_role="style")
    assert "audio prompt (voice, up to 30 s)" in VoiceTone.capabilities.features()
    assert not Capabilities(audio_prompt=False).continues_audio


def test_only_a_continuation_may_stand_without_a_text_prompt():
    continuation = SoundRequest(prompt=" ", duration=5, backend="tone", audio_prompt=clip(2))
    validate_request(continuation, ToneBackend.spec({}), Config())
    voice = SoundRequest(prompt=" ", duration=5, backend="voice_tone", audio_prompt=clip(2))
    with pytest.raises(InvalidRequest, match="empty"):
        validate_request(voice, VoiceTone.spec({}), Config())


class TwoRoleTone(ToneBackend):
    """A backend whose audio prompt is continued by default or, with audio_role=variation, varied."""

    name = "two_role_tone"
    options = ToneBackend.options + (
        Option(AUDIO_ROLE_OPTION, "choice", "continuation", "what the clip is for",
               choices=("continuation", "variation")),)


def test_a_request_picks_the_role_with_the_audio_role_option():
    assert TwoRoleTone.spec({}).audio_prompt_roles == ("continuation", "variation")
    assert ToneBackend.spec({}).audio_prompt_roles == ("continuation",) and ProbeNoPrompt.spec({}).audio_prompt_roles == ()
    assert "audio prompt (continuation or variation, up to 60 s)" in TwoRoleTone.capabilities.features(
        TwoRoleTone.spec({}).audio_prompt_roles)
    longer = request("two_role_tone", 3, 4)
    with pytest.raises(InvalidRequest, match="shorter than the requested 3 s"):
        validate_request(longer, TwoRoleTone.spec({}), Config())  # continued by default
    longer.options = {"audio_role": "variation"}
    assert validate_request(longer, TwoRoleTone.spec({}), Config())["audio_role"] == "variation"  # a variation may be longer
    longer.prompt = ""
    with pytest.raises(InvalidRequest, match="empty"):  # only a continuation stands without text
        validate_request(longer, TwoRoleTone.spec({}), Config())


class ProbeNoPrompt(ToneBackend):
    capabilities = Capabilities(audio_prompt=False)

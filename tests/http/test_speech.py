"""The OpenAI-compatible speech endpoint, driven by the official `openai` client against a running server."""
from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import openai
import pytest
import soundfile as sf

from tag_testkit.tone import VoiceToneBackend
from tagcore import Audio, GenerationItem, GenerationResult, Option, hookimpl, plugins
from tagcore import audio as audio_io

WORD_SECONDS = 0.25


class SpeechTone(VoiceToneBackend):
    """A speech-like test backend: one tone burst per word; pitch from the voice preset, or copied from the
    speaker sample (so cloning is observable); `speaking_rate` shortens the words."""

    name = "speech_tone"
    aliases = ("speechy",)
    sample_rate = 24000
    options = VoiceToneBackend.options + (
        Option("voice_preset", "str", "low", "low (220 Hz) or high (880 Hz)"),
        Option("speaking_rate", "float", 1.0, "speed", minimum=0.5, maximum=2.0),
    )

    def generate_batch(self, items: Sequence[GenerationItem], duration: float, *, options: Mapping[str, Any],
                       progress=None) -> list[GenerationResult]:
        results = []
        for item in items:
            if item.audio_prompt is not None:
                mono = item.audio_prompt.samples.mean(axis=0)
                spectrum = np.abs(np.fft.rfft(mono))
                freq = float(np.argmax(spectrum)) * item.audio_prompt.sample_rate / len(mono)
            else:
                freq = {"low": 220.0, "high": 880.0}[options["voice_preset"]]
            seconds = len(item.prompt.split()) * WORD_SECONDS / options["speaking_rate"]
            t = np.arange(int(seconds * self.sample_rate)) / self.sample_rate
            clip = Audio(0.5 * np.sin(2 * np.pi * freq * t), self.sample_rate)
            results.append(GenerationResult([clip], item.seed, self.name, "speech-tone", {}, {"frequency": freq}))
        return results


class _Plugin:
    @hookimpl
    def register_backends(self, register) -> None:  # type: ignore[no-untyped-def]
        register(SpeechTone)


@pytest.fixture(scope="module")
def speech_server(make_server_module: Any) -> Iterator[Any]:
    plugins.register_plugin(_Plugin(), name="http-test-speech")
    try:
        with make_server_module({"backends": "tone,speech_tone", "rate_limit": 600, "rate_burst": 200},
                                serve=("tone", "speech_tone")) as srv:
            yield srv
    finally:
        plugins.unregister_plugin("http-test-speech")


@pytest.fixture()
def oai(speech_server: Any) -> openai.OpenAI:
    return openai.OpenAI(api_key=speech_server.key, base_url=f"{speech_server.url}/v1", max_retries=0)


def dominant(data: bytes) -> tuple[float, float]:
    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    return float(np.argmax(np.abs(np.fft.rfft(mono)))) * rate / len(mono), len(mono) / rate


def test_speech_in_every_format_with_the_official_client(oai: openai.OpenAI) -> None:
    text = "one two three four"
    wav = oai.audio.speech.create(model="speech_tone", input=text, voice="high", response_format="wav").content
    freq, seconds = dominant(wav)
    assert abs(freq - 880) < 10 and abs(seconds - 4 * WORD_SECONDS) < 0.01
    flac = oai.audio.speech.create(model="speechy", input=text, voice="high", response_format="flac").content
    assert flac[:4] == b"fLaC" and abs(dominant(flac)[0] - 880) < 10
    opus = oai.audio.speech.create(model="speech_tone", input=text, voice="high", response_format="opus").content
    assert opus[:4] == b"OggS" and abs(dominant(opus)[0] - 880) < 20
    pcm = oai.audio.speech.create(model="speech_tone", input=text, voice="high", response_format="pcm").content
    pcm_samples = np.frombuffer(pcm, "<i2")
    assert len(pcm_samples) == int(4 * WORD_SECONDS * 24000)  # 24 kHz mono 16-bit, as OpenAI documents
    assert np.abs(pcm_samples).max() > 10000


def test_default_model_voice_names_and_speed(oai: openai.OpenAI) -> None:
    slow = oai.audio.speech.create(model="tts-1", input="a b", voice="alloy", response_format="wav").content
    freq, seconds = dominant(slow)
    assert abs(freq - 220) < 10 and abs(seconds - 2 * WORD_SECONDS) < 0.01  # OpenAI voice = default preset
    fast = oai.audio.speech.create(model="tts-1", input="a b", voice="alloy", response_format="wav", speed=2.0)
    assert abs(dominant(fast.content)[1] - WORD_SECONDS) < 0.01


def test_mp3_or_a_clear_refusal(oai: openai.OpenAI) -> None:
    from tag_http.speech import MP3_AVAILABLE

    if MP3_AVAILABLE:
        mp3 = oai.audio.speech.create(model="speech_tone", input="hello there", voice="low").content  # mp3 default
        assert abs(dominant(mp3)[0] - 220) < 15
    with pytest.raises(openai.BadRequestError, match="no AAC encoder"):
        oai.audio.speech.create(model="speech_tone", input="hello", voice="low", response_format="aac")


def test_cloning_an_uploaded_voice(oai: openai.OpenAI, speech_server: Any) -> None:
    t = np.arange(16000) / 16000
    sample = audio_io.encode(Audio(0.4 * np.sin(2 * np.pi * 500 * t), 16000), "wav")
    with speech_server.client() as c:
        uploaded = c.post("/v1/audio/voices", files={"file": ("me.wav", sample, "audio/wav")})
    assert uploaded.status_code == 200, uploaded.text
    voice = uploaded.json()["id"]
    cloned = oai.audio.speech.create(model="speech_tone", input="say it", voice=voice, response_format="wav")
    assert abs(dominant(cloned.content)[0] - 500) < 10


@pytest.mark.parametrize("kwargs, words", [
    ({"model": "tone", "voice": "alloy"}, "makes sounds, not speech"),
    ({"model": "nope", "voice": "alloy"}, "unknown backend"),
    ({"model": "speech_tone", "voice": "voice_0123"}, "no uploaded voice"),
    ({"model": "speech_tone", "voice": "alloy", "speed": 3.0}, "speaking_rate"),
])
def test_requests_a_backend_cannot_honour_are_refused(oai: openai.OpenAI, kwargs: dict, words: str) -> None:
    with pytest.raises(openai.BadRequestError, match=words):
        oai.audio.speech.create(input="hello", response_format="wav", **kwargs)


def test_wrong_key_is_refused(speech_server: Any) -> None:
    bad = openai.OpenAI(api_key="wrong", base_url=f"{speech_server.url}/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.audio.speech.create(model="speech_tone", input="hello", voice="low")

"""The OpenAI-compatible speech API: `POST /v1/audio/speech` and uploaded voice samples for cloning.

OpenAI clients send `model`, `input`, `voice`, `response_format` and `speed`; this module turns such a body into
a TAG request for a speech backend (a backend whose clip lasts as long as its text) and the finished clip into the
bytes of the asked format. What a backend cannot do is refused with a 400 that says so, never approximated:
`speed` needs a backend with a `speaking_rate` option, a named voice needs a backend with a `voice_preset` option
(OpenAI's own voice names mean "the backend's default voice"), and a cloned voice needs a backend that takes a
speaker sample as its audio prompt.
"""
from __future__ import annotations

import io
import secrets
import threading
import time
from collections import OrderedDict
from typing import Any, Literal

import numpy as np
import soundfile as sf
from pydantic import BaseModel, ConfigDict, Field

from tagcore import audio as audio_io
from tagcore.audio_types import Audio
from tagcore.spec import BackendSpec
from tagcore.errors import InvalidRequest
from tagcore.messages import MAX_PROMPT_CHARS

OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
"""Model names OpenAI clients default to; they select the server's default speech backend."""
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
                 "default")
"""OpenAI's voice names: accepted by every speech backend as its default voice."""
PCM_RATE = 24000
"""OpenAI's `pcm` format: raw 16-bit little-endian mono samples at 24 kHz, no header."""
MP3_AVAILABLE = "MP3" in sf.available_formats()
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
SpeechFormat = Literal["wav", "flac", "opus", "pcm", "mp3", "aac"]
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "opus": "audio/ogg", "pcm": "audio/pcm",
               "mp3": "audio/mpeg", "aac": "audio/aac"}
VOICE_ID_PREFIX = "voice_"
VOICE_TTL = 24 * 3600.0


class SpeechRequest(BaseModel):
    """The body of OpenAI's `audio/speech` call (unknown fields such as `instructions` are refused: we cannot
    honour them)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(max_length=100, description="a speech backend or alias; tts-1 / tts-1-hd: the default one")
    input: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="the text to speak")
    voice: str = Field(max_length=100, description="a preset of the backend, an OpenAI voice name (the "
                                                   "backend's default voice) or the id of an uploaded sample")
    response_format: SpeechFormat = Field("mp3", description="mp3 and aac only where an encoder is installed")
    speed: float = Field(1.0, ge=0.25, le=4.0, allow_inf_nan=False)


class VoiceSample(BaseModel):
    id: str
    seconds: float
    sample_rate: int


class VoiceStore:
    """Uploaded speaker samples, by random id, bounded in number and kept for `ttl` seconds."""

    def __init__(self, ttl: float = VOICE_TTL, capacity: int = 256) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._lock = threading.Lock()
        self._samples: OrderedDict[str, tuple[Audio, float]] = OrderedDict()

    def add(self, audio: Audio) -> VoiceSample:
        voice_id = VOICE_ID_PREFIX + secrets.token_hex(12)
        with self._lock:
            self._samples[voice_id] = (audio, time.time() + self.ttl)
            while len(self._samples) > self.capacity:
                self._samples.popitem(last=False)
        return VoiceSample(id=voice_id, seconds=round(audio.duration, 3), sample_rate=audio.sample_rate)

    def get(self, voice_id: str) -> Audio | None:
        with self._lock:
            entry = self._samples.get(voice_id)
            if entry is None:
                return None
            if time.time() >= entry[1]:
                del self._samples[voice_id]
                return None
            return entry[0]


def speech_options(cls: BackendSpec, body: SpeechRequest, sample: Audio | None) -> dict[str, Any]:
    """Request options for `cls` that realise the body's voice and speed, or InvalidRequest saying why not."""
    names = {o.name for o in cls.options if o.scope == "request"}
    options: dict[str, Any] = {}
    if body.speed != 1.0:
        if "speaking_rate" not in names:
            raise InvalidRequest(f"backend {cls.name!r} cannot change the speed of speech; send speed 1.0")
        options["speaking_rate"] = body.speed
    if sample is not None:
        if not (cls.capabilities.audio_prompt and cls.capabilities.audio_prompt_role == "voice"):
            raise InvalidRequest(f"backend {cls.name!r} cannot clone a voice from a sample")
    elif body.voice.startswith(VOICE_ID_PREFIX):
        raise InvalidRequest(f"no uploaded voice {body.voice!r} (samples are kept for a limited time: upload it "
                             "again to /v1/audio/voices)")
    elif body.voice not in OPENAI_VOICES:
        if "voice_preset" not in names:
            raise InvalidRequest(f"backend {cls.name!r} has no voice presets: use one of OpenAI's voice names for "
                                 "its default voice, or upload a sample")
        options["voice_preset"] = body.voice
    return options


def check_format(fmt: str) -> None:
    """InvalidRequest for a format this server cannot encode (checked before any work is queued)."""
    if fmt == "aac" or (fmt == "mp3" and not MP3_AVAILABLE):
        available = ["wav", "flac", "opus", "pcm"] + (["mp3"] if MP3_AVAILABLE else [])
        raise InvalidRequest(f"this server has no {fmt.upper()} encoder: ask for {', '.join(available)}")


def encode_speech(audio: Audio, fmt: str) -> bytes:
    """The clip in OpenAI's format `fmt` (see `check_format`)."""
    check_format(fmt)
    if fmt == "pcm":
        mono = audio_io.resample(Audio(audio.samples.mean(axis=0, keepdims=True), audio.sample_rate), PCM_RATE)
        return (np.clip(mono.samples[0], -1.0, 1.0) * 32767).round().astype("<i2").tobytes()
    if fmt == "opus":
        return audio_io.encode(audio, "ogg")
    if fmt == "mp3":
        if audio.sample_rate not in MP3_RATES:
            audio = audio_io.resample(audio, PCM_RATE)
        buffer = io.BytesIO()
        sf.write(buffer, np.clip(audio.samples, -1.0, 1.0).T, audio.sample_rate, format="MP3")
        return buffer.getvalue()
    return audio_io.encode(audio, fmt)

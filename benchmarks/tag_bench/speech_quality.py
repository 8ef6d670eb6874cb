"""Speech quality of a benchmark cell: intelligibility (WER of a Whisper transcript) and speaker similarity.

CLAP judges sounds, not whether the words are right or the voice is the speaker's. For speech backends the bench
transcribes each clip with a transformers Whisper model and scores the transcript against the text asked for; for
backends that clone a voice it compares the speaker embedding of the voice sample with that of each clip, using
the same *ForXVector speaker-verification model as the speecht5 backend (cosine of unit vectors: 1 is the same
direction; unrelated voices typically score well below real matches, but the scale is the encoder's own, so
compare rows only under the same encoder). Each score is measured only when its model is given (never invented).
"""
from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from tagcore.audio import resample
from tagcore.backend import Backend
from tagcore.audio_types import Audio
from tagcore.errors import ConfigError, InvalidRequest

from .wer import word_error_rate

if TYPE_CHECKING:
    from tagcore.weights import Required, WeightsSource

WHISPER_RATE = 16000
WHISPER_WINDOW_SECONDS = 30.0
"""Whisper hears 30 s at a time; longer clips are transcribed window by window and the pieces joined."""
ASR_FILES = ("config.json", ("preprocessor_config.json", "processor_config.json"))
CLIP_MIN_SOUND_SECONDS = 0.5
"""A generated clip ("Hi.") may be shorter than the 1 s asked of voice samples; half a second still embeds."""
SUGGESTED_ASR = "openai/whisper-small"
"""Named in download hints only: the bench never picks an ASR model by itself."""


def is_speech_backend(backend_class: type[Backend]) -> bool:
    """Whether the backend speaks its prompt (a tag-speech backend): only then is a WER meaningful."""
    try:
        from tag_speech.base import SpeechBackend
    except ImportError:
        return False
    return issubclass(backend_class, SpeechBackend)


def clones_voices(backend_class: type[Backend]) -> bool:
    return backend_class.capabilities.audio_prompt_role == "voice"


class SpeechQuality:
    """Measures nothing: the scores of a bench run without an ASR model or a speaker encoder."""

    asr_model: str | None = None
    speaker_encoder: str | None = None

    def describe(self) -> dict[str, str]:
        """One line per score for results.md and meta.json: which model measured it, or why it is n/a."""
        return {
            "wer": f"ASR model {self.asr_model}" if self.asr_model else "n/a: no --asr-model (a Whisper folder) given",
            "speaker_sim": (f"speaker encoder {self.speaker_encoder}" if self.speaker_encoder else
                            "n/a: no --speaker-encoder (a *ForXVector folder) given"),
        }

    def measure(self, backend_class: type[Backend], prompts: Sequence[str], clips: Sequence[Audio],
                sample: Audio | None) -> tuple[float | None, float | None]:
        """(WER, mean speaker cosine) of a cell; None for what is not measured or does not apply."""
        return None, None


class ModelSpeechQuality(SpeechQuality):
    """WER with a Whisper model and/or speaker similarity with an x-vector model, each optional."""

    def __init__(self, asr_model: str | None, speaker_encoder: str | None, device: str = "auto") -> None:
        from tagcore.devices import resolve_device

        self.device = resolve_device(device)
        self.asr_model, self.speaker_encoder = asr_model, speaker_encoder
        self._asr = self._load_asr(asr_model) if asr_model else None
        self._encoder = self._load_encoder(speaker_encoder) if speaker_encoder else None

    def _load_asr(self, where: str) -> tuple[Any, Any]:
        from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

        source = _weights_source("ASR model", where, SUGGESTED_ASR, ASR_FILES)
        processor = _speech_weights().load(source, AutoProcessor.from_pretrained, SUGGESTED_ASR)
        model = _speech_weights().load(source, AutoModelForSpeechSeq2Seq.from_pretrained, SUGGESTED_ASR)
        return processor, model.to(self.device).eval()

    def _load_encoder(self, where: str) -> Any:
        try:
            from tag_speech.voice import DEFAULT_SPEAKER_ENCODER, SPEAKER_ENCODER_FILES, SpeakerEncoder
        except ImportError:
            raise ConfigError("speaker similarity needs the tag-speech plugin: pip install tag-speech") from None
        source = _weights_source("speaker encoder", where, DEFAULT_SPEAKER_ENCODER, SPEAKER_ENCODER_FILES)
        return SpeakerEncoder(source, self.device)

    def measure(self, backend_class: type[Backend], prompts: Sequence[str], clips: Sequence[Audio],
                sample: Audio | None) -> tuple[float | None, float | None]:
        wer = None
        if self._asr is not None and is_speech_backend(backend_class):
            wer = word_error_rate(prompts, [self.transcribe(clip) for clip in clips])
        similarity = None
        if self._encoder is not None and sample is not None and clones_voices(backend_class):
            similarity = self.similarity(sample, clips)
        return wer, similarity

    def transcribe(self, clip: Audio) -> str:
        """English transcript of `clip`, 30 s window by window."""
        import torch

        assert self._asr is not None, "transcribe needs an ASR model"
        processor, model = self._asr
        samples = resample(clip.mono(), WHISPER_RATE).samples[0]
        window = int(WHISPER_WINDOW_SECONDS * WHISPER_RATE)
        pieces = []
        for start in range(0, max(len(samples), 1), window):
            features = processor(samples[start:start + window], sampling_rate=WHISPER_RATE,
                                 return_tensors="pt").input_features.to(self.device, model.dtype)
            # English-only checkpoints (whisper-*.en) take no language or task
            task = ({"language": "en", "task": "transcribe"}
                    if getattr(model.generation_config, "is_multilingual", False) else {})
            with torch.inference_mode():
                # half the decoder's positions per window, as OpenAI's Whisper does (224 of 448)
                tokens = model.generate(features, max_new_tokens=model.config.max_target_positions // 2, **task)
            pieces.append(processor.batch_decode(tokens, skip_special_tokens=True)[0].strip())
        return " ".join(piece for piece in pieces if piece)

    def similarity(self, sample: Audio, clips: Sequence[Audio]) -> float | None:
        """Mean cosine between the sample's and each clip's speaker embedding, over the clips that hold at least
        CLIP_MIN_SOUND_SECONDS of sound (silent or near-empty clips are left out); None when none does."""
        encoder = self._encoder
        assert encoder is not None, "similarity needs a speaker encoder"
        reference, _ = encoder.embed(sample)
        scores = []
        for clip in clips:
            try:
                embedding, _ = encoder.embed(clip, min_seconds=CLIP_MIN_SOUND_SECONDS)
            except InvalidRequest:
                continue
            scores.append(float(np.dot(reference, embedding)))
        return float(np.mean(scores)) if scores else None


def _weights_source(role: str, where: str, suggested: str, required: tuple[Required, ...]) -> WeightsSource:
    """A folder (or hub id) checked file by file like the speech backends' weights, so a gap is named."""
    return _speech_weights().locate(role, where, suggested, required)


def _speech_weights() -> ModuleType:
    """tag-speech's weights module (how speech models are fetched and checked), or a ConfigError saying so."""
    try:
        from tag_speech import weights
    except ImportError:
        raise ConfigError("speech scores need the tag-speech plugin: pip install tag-speech") from None
    return weights


def build_speech_quality(asr_model: str | None, speaker_encoder: str | None) -> SpeechQuality:
    """A scorer for what was given; the plain SpeechQuality (all n/a) when nothing was."""
    if not asr_model and not speaker_encoder:
        return SpeechQuality()
    return ModelSpeechQuality(asr_model, speaker_encoder)

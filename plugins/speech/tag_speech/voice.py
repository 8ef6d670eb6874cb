"""Speaker embeddings for SpeechT5: the shipped default voice, a voice file, or one cloned from a sample.

SpeechT5 conditions its decoder on a 512-dimensional, L2-normalised x-vector. A sample of someone speaking is
turned into such a vector by an x-vector speaker-verification model from transformers (WavLMForXVector,
UniSpeechSatForXVector...; default microsoft/wavlm-base-plus-sv).

Honest caveats: SpeechT5 was trained on x-vectors from SpeechBrain's spkrec-xvect-voxceleb, not on WavLM ones.
Both are 512-d speaker-verification embeddings, normalised the same way, but they are different spaces, so a
clone catches coarse traits (pitch range, gender, timbre) at best; it is not a faithful voice copy.
The default voice (default_voice.npy) is NOT a recording of anyone: it is the unit vector
`make_default_voice()` draws from a seeded normal distribution, shipped so that every installation speaks with
the same stable voice without downloading a data set. Set the worker option `voice` to a .npy x-vector (e.g. a
row of the Matthijs/cmu-arctic-xvectors data set used in the SpeechT5 model card) for a voice SpeechT5 knows.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tagcore.audio import resample
from tagcore.audio_types import Audio
from tagcore.errors import ConfigError, InvalidRequest

from tagcore.weights import WeightsSource

from . import weights
from .weights import MODEL_WEIGHTS

DEFAULT_VOICE_FILE = Path(__file__).with_name("default_voice.npy")
DEFAULT_VOICE_SEED = 5_310_712
EMBEDDING_DIM = 512
ENCODER_RATE = 16000
MIN_SAMPLE_SECONDS = 1.0
"""A sample must hold at least this much sound (not counting silence) to characterise a voice."""
MAX_SAMPLE_SECONDS = 30.0
"""Only the first 30 s of a sample are used: enough for a stable embedding, bounded memory."""
MAX_PROMPT_SECONDS = 60.0
"""Longest sample accepted (a long voice message is fine; its first MAX_SAMPLE_SECONDS are used)."""
SILENCE_DBFS = -50.0
"""20 ms frames quieter than this (RMS) count as silence: room noise, not speech."""
FRAME_SECONDS = 0.02
DEFAULT_SPEAKER_ENCODER = "microsoft/wavlm-base-plus-sv"
SPEAKER_ENCODER_FILES = ("config.json", MODEL_WEIGHTS, "preprocessor_config.json")


def make_default_voice(dim: int = EMBEDDING_DIM) -> np.ndarray:
    """The default voice: a fixed unit vector from a seeded normal draw (reproduces default_voice.npy)."""
    vector = np.random.default_rng(DEFAULT_VOICE_SEED).standard_normal(dim)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def load_voice_file(path: str | Path, dim: int) -> np.ndarray:
    """A speaker embedding from a .npy file of `dim` floats, normalised to unit length."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"voice file {path} does not exist (a .npy holding one {dim}-value x-vector)")
    try:
        vector = np.load(path, allow_pickle=False).astype(np.float32).reshape(-1)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"voice file {path} is unsafe or corrupt: not a plain .npy array of numbers ({exc}); "
                          "pickled objects are never loaded") from None
    if vector.size != dim:
        raise ConfigError(f"voice file {path} holds {vector.size} values; this model needs {dim}")
    return normalise(vector)


def normalise(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        raise InvalidRequest("the speaker embedding is empty or not finite")
    return (vector / norm).astype(np.float32)


class SpeakerEncoder:
    """An x-vector model from transformers that maps a voice sample to a normalised speaker embedding."""

    def __init__(self, source: WeightsSource, device: Any) -> None:
        from transformers import AutoFeatureExtractor, AutoModelForAudioXVector

        self.source = source
        self.extractor = weights.load(source, AutoFeatureExtractor.from_pretrained, DEFAULT_SPEAKER_ENCODER)
        model = weights.load(source, AutoModelForAudioXVector.from_pretrained, DEFAULT_SPEAKER_ENCODER)
        self.model = model.to(device).eval()
        self.device = device
        self.rate = int(getattr(self.extractor, "sampling_rate", ENCODER_RATE))

    @property
    def dim(self) -> int:
        return int(self.model.config.xvector_output_dim)

    def embed(self, sample: Audio, min_seconds: float = MIN_SAMPLE_SECONDS) -> tuple[np.ndarray, float]:
        """(unit-length embedding, seconds of the sample used); see `usable_sample` for `min_seconds`."""
        import torch

        samples = usable_sample(sample, self.rate, min_seconds)
        inputs = self.extractor(samples, sampling_rate=self.rate, return_tensors="pt")
        with torch.inference_mode():
            embedding = self.model(**{k: v.to(self.device) for k, v in inputs.items()}).embeddings
        return normalise(embedding[0].float().cpu().numpy()), len(samples) / self.rate


def usable_sample(sample: Audio, rate: int = ENCODER_RATE, min_seconds: float = MIN_SAMPLE_SECONDS) -> np.ndarray:
    """The first MAX_SAMPLE_SECONDS of `sample` as mono float samples at `rate`, or an InvalidRequest saying why
    the sample cannot characterise a voice (shorter than `min_seconds`, silent, too little sound in it).

    Checked before the speaker encoder is loaded, so a bad sample costs nothing.
    """
    if sample.duration < min_seconds:
        raise InvalidRequest(f"the voice sample is {sample.duration:.1f} s long; send at least "
                             f"{min_seconds:g} s of clear speech")
    samples = resample(sample.mono(), rate).samples[0, :int(MAX_SAMPLE_SECONDS * rate)]
    sounding = sounding_seconds(samples, rate)
    if sounding == 0.0:
        raise InvalidRequest(f"the voice sample is silent (nothing louder than {SILENCE_DBFS:g} dBFS); record "
                             "someone speaking")
    if sounding < min_seconds:
        raise InvalidRequest(f"the voice sample holds only {sounding:.1f} s of sound, the rest is silence; send at "
                             f"least {min_seconds:g} s of clear speech")
    return samples


def sounding_seconds(samples: np.ndarray, rate: int) -> float:
    """Seconds of `samples` in 20 ms frames whose RMS level is above SILENCE_DBFS."""
    frame = max(1, int(FRAME_SECONDS * rate))
    count = len(samples) // frame
    if count == 0:
        return 0.0
    frames = samples[:count * frame].astype(np.float64).reshape(count, frame)
    rms = np.sqrt(np.mean(frames ** 2, axis=1))
    return float(np.sum(rms > 10 ** (SILENCE_DBFS / 20))) * frame / rate

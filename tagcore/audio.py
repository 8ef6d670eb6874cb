"""Reading, fitting and encoding audio (soundfile): WAV PCM16 by default, FLAC, OGG/Opus."""
from __future__ import annotations

import io
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

from .audio_types import Audio
from .errors import InvalidRequest, UnreadableAudio

FORMATS = {
    # name: (soundfile format, default subtype, file suffix)
    "wav": ("WAV", "PCM_16", ".wav"),
    "flac": ("FLAC", "PCM_16", ".flac"),
    "ogg": ("OGG", "OPUS", ".ogg"),
}
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
MAX_INPUT_BYTES = 20 * 1024 * 1024


def format_for_path(path: str | Path, default: str = "wav") -> str:
    suffix = Path(path).suffix.lower().lstrip(".")
    return {"wav": "wav", "flac": "flac", "ogg": "ogg", "opus": "ogg"}.get(suffix, default)


def resample(audio: Audio, rate: int) -> Audio:
    """Polyphase resampling; exact identity when the rate already matches."""
    if audio.sample_rate == rate:
        return audio
    from scipy.signal import resample_poly  # seconds to import: only when a clip really needs it

    g = gcd(audio.sample_rate, rate)
    samples = resample_poly(audio.samples, rate // g, audio.sample_rate // g, axis=1)
    return Audio(samples.astype(np.float32), rate)


def fit_duration(audio: Audio, duration: float, *, upper_bound: bool = False) -> Audio:
    """Trim to exactly round(duration * rate) frames (backends may produce a little more).

    With `upper_bound` (variable-length backends such as speech) a shorter clip is returned unchanged.
    """
    frames = int(round(duration * audio.sample_rate))
    if audio.frames < frames and not upper_bound:
        raise ValueError(f"audio has {audio.frames} frames, fewer than the {frames} requested")
    return Audio(audio.samples[:, :frames], audio.sample_rate)


def normalize(audio: Audio, peak_dbfs: float = -1.0) -> Audio:
    """Scale so the loudest sample sits at `peak_dbfs`; silence stays silence."""
    peak = float(np.abs(audio.samples).max(initial=0.0))
    if peak == 0.0:
        return audio
    return Audio(audio.samples * (10 ** (peak_dbfs / 20) / peak), audio.sample_rate)


def encode(audio: Audio, fmt: str = "wav", subtype: str | None = None) -> bytes:
    """Encode to bytes. Samples are clipped to [-1, 1] for integer formats; no other gain change."""
    if fmt not in FORMATS:
        raise InvalidRequest(f"unknown audio format {fmt!r} (choose from {', '.join(FORMATS)})")
    container, default_subtype, _ = FORMATS[fmt]
    if fmt == "ogg" and audio.sample_rate not in OPUS_RATES:
        audio = resample(audio, 48000)
    buffer = io.BytesIO()
    samples = np.clip(audio.samples, -1.0, 1.0).T
    sf.write(buffer, samples, audio.sample_rate, format=container, subtype=subtype or default_subtype)
    return buffer.getvalue()


def write(path: str | Path, audio: Audio, fmt: str | None = None) -> Path:
    """Write `audio` to `path` (format from `fmt` or the suffix), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(audio, fmt or format_for_path(path)))
    return path


def decode(data: bytes) -> Audio:
    """Decode WAV/FLAC/OGG/MP3 bytes (anything libsndfile reads) to float32 audio."""
    if len(data) > MAX_INPUT_BYTES:
        raise InvalidRequest(f"audio file is {len(data) // 1024} KiB, over the {MAX_INPUT_BYTES // 2**20} MiB limit")
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        reason = getattr(exc, "error_string", "") or str(exc)  # str() would name the in-memory buffer object
        raise UnreadableAudio(f"could not read the audio file: {reason}") from None
    if samples.shape[0] == 0:
        raise InvalidRequest("the audio file holds no samples")
    return Audio(samples.T, int(rate))


def read(path: str | Path) -> Audio:
    path = Path(path)
    if not path.is_file():
        raise InvalidRequest(f"audio file {path} does not exist")
    return decode(path.read_bytes())

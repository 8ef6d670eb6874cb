import io

import numpy as np
import pytest
import soundfile as sf

from tagcore import Audio
from tagcore import audio as audio_io
from tagcore.errors import InvalidRequest


def tone(rate=16000, seconds=1.0, level=0.3, channels=1):
    t = np.arange(int(rate * seconds)) / rate
    return Audio(np.tile(level * np.sin(2 * np.pi * 440 * t), (channels, 1)), rate)


def test_wav_is_pcm16_without_gain_change():
    clip = tone(level=0.3)
    data = audio_io.encode(clip, "wav")
    info = sf.info(io.BytesIO(data))
    assert info.subtype == "PCM_16" and info.samplerate == 16000
    back = audio_io.decode(data)
    assert np.max(np.abs(back.samples - clip.samples)) < 1 / 32767 + 1e-6
    assert abs(np.abs(back.samples).max() - 0.3) < 1e-3


@pytest.mark.parametrize("rate", [16000, 32000, 44100])
def test_ogg_opus_any_rate(rate):
    data = audio_io.encode(tone(rate=rate, seconds=2.0), "ogg")
    info = sf.info(io.BytesIO(data))
    assert info.format == "OGG" and info.subtype == "OPUS"
    assert abs(info.duration - 2.0) < 0.05


def test_flac_and_file_suffixes(tmp_path):
    path = audio_io.write(tmp_path / "sub" / "clip.flac", tone(channels=2))
    info = sf.info(str(path))
    assert info.format == "FLAC" and info.channels == 2
    assert audio_io.format_for_path("x.opus") == "ogg" and audio_io.format_for_path("x.bin") == "wav"


def test_fit_duration_trims_exactly_and_refuses_short_audio():
    clip = tone(seconds=1.0)
    assert audio_io.fit_duration(clip, 0.5).frames == 8000
    assert audio_io.fit_duration(clip, 1 / 3).frames == 5333
    with pytest.raises(ValueError):
        audio_io.fit_duration(clip, 2.0)


def test_normalize_only_when_asked():
    clip = tone(level=0.1)
    loud = audio_io.normalize(clip)
    assert abs(np.abs(loud.samples).max() - 10 ** (-1 / 20)) < 1e-5
    silent = Audio(np.zeros(100), 16000)
    assert audio_io.normalize(silent) is silent


def test_resample_and_bad_input():
    up = audio_io.resample(tone(seconds=1.0), 48000)
    assert up.frames == 48000 and up.sample_rate == 48000
    with pytest.raises(InvalidRequest, match="could not read"):
        audio_io.decode(b"definitely not audio")
    with pytest.raises(InvalidRequest, match="unknown audio format"):
        audio_io.encode(tone(), "mp3")


def test_fit_duration_as_an_upper_bound_keeps_shorter_clips():
    clip = tone(seconds=1.0)
    assert audio_io.fit_duration(clip, 2.0, upper_bound=True).frames == 16000
    assert audio_io.fit_duration(clip, 0.5, upper_bound=True).frames == 8000

"""End to end through the documented command, on the tiny model: the WAV equals the in-process result."""
from __future__ import annotations

import os
import subprocess

import numpy as np
import soundfile as sf


def test_tag_generate_writes_the_seeded_clip(tiny_weights, tiny_backend, tmp_path):
    out = tmp_path / "out.wav"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TAG_CONFIG=str(tmp_path / "none.toml"))
    command = ["tag", "generate", "dog barks on the roof", "-b", "make_an_audio", "-d", "1.5", "--seed", "9",
               "-O", "steps=3", "-O", "guidance=2.5", "-O", f"weights={tiny_weights}", "--device", "cpu",
               "-o", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "XFORMERS" not in done.stderr and "Warning" not in done.stderr, done.stderr  # a normal run is quiet
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", 24000)
    written, _ = sf.read(str(out), dtype="float32")
    expected = tiny_backend.generate("dog barks on the roof", 1.5, seed=9,
                                     options={"steps": 3, "guidance": 2.5}).audio.samples[0]
    assert np.abs(written - expected).max() <= 1e-3 + 1 / 32768


def test_missing_weights_is_a_one_line_error(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TAG_CONFIG=str(tmp_path / "none.toml"))
    env.pop("TAG_MAKE_AN_AUDIO_WEIGHTS", None)
    done = subprocess.run(["tag", "generate", "rain", "-b", "make_an_audio", "-d", "1", "--device", "cpu",
                           "-O", f"weights={tmp_path / 'nowhere'}", "-o", str(tmp_path / "x.wav")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "does not exist" in done.stderr and "tag models pull make_an_audio" in done.stderr
    assert "Traceback" not in done.stderr

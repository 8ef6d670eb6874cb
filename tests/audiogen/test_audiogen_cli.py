"""The acceptance command, `tag generate ... -b audiogen -O weights=DIR --device cpu`, through the real CLI."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from tagcore.cli import cli
from tag_audiogen.backend import AudioGenBackend


@pytest.mark.parametrize("decoder", ["tag", "audiocraft"])
def test_tag_generate_writes_the_seeded_clip(tiny_audiogen, tmp_path, monkeypatch, decoder):
    monkeypatch.setenv("TAG_CONFIG", str(tmp_path / "none.toml"))
    out = tmp_path / "out.wav"
    result = CliRunner().invoke(cli, ["generate", "a dog barks", "-b", "audiogen", "-d", "1", "--seed", "7",
                                      "-O", f"weights={tiny_audiogen}", "-O", "top_k=100", "-O", f"decoder={decoder}",
                                      "--device", "cpu",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "seed 7" in result.output
    samples, rate = sf.read(out, dtype="float32", always_2d=True)
    assert rate == 16000 and samples.shape == (16000, 1)
    expected = AudioGenBackend({"weights": str(tiny_audiogen), "device": "cpu"}).generate(
        "a dog barks", 1.0, seed=7, options={"top_k": 100})
    np.testing.assert_allclose(samples[:, 0], expected.audio.samples[0], atol=1 / 2**15)


def test_a_normal_run_prints_no_third_party_warnings(tiny_audiogen, tmp_path):
    """audiocraft imports xformers, whose newest build targets another torch: its kernel warning must not show."""
    import os
    import subprocess

    env = dict(os.environ, HF_HUB_OFFLINE="1", TAG_CONFIG=str(tmp_path / "none.toml"))
    done = subprocess.run(["tag", "generate", "a dog barks", "-b", "audiogen", "-d", "1", "--seed", "7", "-q",
                           "-O", f"weights={tiny_audiogen}", "--device", "cpu", "-o", str(tmp_path / "o.wav")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "XFORMERS" not in done.stderr and "warn" not in done.stderr.lower(), done.stderr

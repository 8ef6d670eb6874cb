"""End to end through the documented commands on the tiny folders: every format keeps 44.1 kHz stereo."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from tagcore import plugins
from tagcore.cli import cli


def tag(*args: str, tmp_path, config: str = "none.toml"):
    """`tag ARGS` in this process (the model stays imported; one subprocess test covers the real command)."""
    plugins.get_plugin_manager().hook.register_commands(cli=cli)  # what `tag` (cli.main) does at start
    result = CliRunner().invoke(cli, list(args), env={"TAG_CONFIG": str(tmp_path / config)}, catch_exceptions=False)
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


def tag_process(*args: str, tmp_path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TAG_CONFIG=str(tmp_path / "none.toml"))
    return subprocess.run(["tag", *args], env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("fmt,rate", [("wav", 44100), ("flac", 44100), ("ogg", 48000)])
def test_generate_writes_stereo_in_every_format(sa3_folder, sa3, tmp_path, fmt, rate):
    out = tmp_path / f"clip.{fmt}"
    run = tag_process if fmt == "wav" else tag  # the installed `tag` command once, in-process otherwise
    done = run("generate", "a dog barks", "-b", "stable_audio_3", "-d", "1.5", "--seed", "4", "-q",
               "-O", f"weights={sa3_folder}", "--device", "cpu", "-o", str(out), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    info = sf.info(str(out))
    assert (info.samplerate, info.channels) == (rate, 2)
    written, _ = sf.read(str(out), dtype="float32", always_2d=True)
    if fmt == "ogg":  # lossy at 48 kHz: only the length and the channels are exact
        assert abs(written.shape[0] - round(1.5 * 48000)) <= 960
        return
    expected = sa3.generate("a dog barks", 1.5, seed=4).audio.samples.T
    assert written.shape == expected.shape
    assert np.abs(written - np.clip(expected, -1, 1)).max() <= 1e-3 + 1 / 32768
    assert np.abs(written[:, 0] - written[:, 1]).max() > 1e-3  # left and right differ: stereo kept


def test_continuation_from_the_command_line(sa3_folder, tmp_path):
    prompt_clip = tmp_path / "start.wav"
    sf.write(str(prompt_clip), (np.random.default_rng(0).standard_normal((22050, 2)) * 0.1).astype(np.float32), 44100)
    out = tmp_path / "more.flac"
    done = tag("generate", "", "-b", "sa3", "-d", "2", "--seed", "1", "-q", "--audio-prompt", str(prompt_clip),
               "-O", f"weights={sa3_folder}", "--device", "cpu", "-o", str(out), "--json", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sf.info(str(out)).channels == 2 and sf.info(str(out)).frames == 88200
    assert json.loads(done.stdout.splitlines()[-1])["metadata"]["audio_role"] == "continuation"


def test_sao_generate(sao_folder, tmp_path):
    out = tmp_path / "open.wav"
    done = tag("generate", "rain on the roof", "-b", "stable_audio_open", "-d", "1", "--seed", "2", "-q",
               "-O", "steps=4", "--negative-prompt", "wind", "-O", f"weights={sao_folder}", "--device", "cpu",
               "-o", str(out), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (sf.info(str(out)).samplerate, sf.info(str(out)).channels, sf.info(str(out)).frames) == (44100, 2, 44100)


@pytest.mark.parametrize("args,message", [
    (["-d", "7"], "1 to 6 s"),  # the tiny checkpoint's duration embedder stops at 6 s
    (["-O", "strength=0"], "strength"),
    (["-O", "audio_role=voice"], "audio_role"),
    (["--negative-prompt", "rain"], "guidance > 1"),
    (["--audio-prompt", "CLIP", "-O", "guidance=3"], "text-only"),
])
def test_bad_input_exits_2_with_one_line(sa3_folder, tmp_path, args, message):
    clip = tmp_path / "clip.wav"
    sf.write(str(clip), np.zeros((4410, 2), np.float32), 44100)
    args = [str(clip) if a == "CLIP" else a for a in args]
    done = tag("generate", "a dog barks", "-b", "stable_audio_3", "-d", "1", "-q", *args,
               "-O", f"weights={sa3_folder}", "--device", "cpu", "-o", str(tmp_path / "x.wav"), tmp_path=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.wav").exists()


def test_backends_lists_roles_limits_and_missing_files(sa3_folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(sa3_folder, broken)
    (broken / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    (tmp_path / "tag.toml").write_text(f'[backends.stable_audio_3]\nweights = "{broken}"\n')
    done = tag("backends", "--json", tmp_path=tmp_path, config="tag.toml")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    sa3, sao = rows["stable_audio_3"], rows["stable_audio_open"]
    assert sa3["audio_prompt_roles"] == ["continuation", "variation"] and sao["audio_prompt_roles"] == []
    assert not sa3["weights"]["present"]
    assert "transformer/diffusion_pytorch_model.safetensors" in sa3["weights"]["detail"]
    assert "tag models pull stable_audio_3 --variant small-sfx --dest DIR" in sa3["weights"]["detail"]
    # the default hub id is never fetched implicitly: MISSING with the command that fetches it
    assert not sao["weights"]["present"] and "tag models pull stable_audio_open" in sao["weights"]["detail"]
    text = tag("backends", tmp_path=tmp_path, config="tag.toml").stdout
    assert "audio prompt (continuation or variation" in text and "MISSING" in text


def test_generate_with_missing_weights_names_the_file(sa3_folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(sa3_folder, broken)
    (broken / "vae" / "config.json").unlink()
    done = tag("generate", "rain", "-b", "stable_audio_3", "-d", "1", "-q", "-O", f"weights={broken}",
               "--device", "cpu", "-o", str(tmp_path / "x.wav"), tmp_path=tmp_path)
    assert done.returncode == 2 and "vae/config.json" in done.stderr and "tag models pull" in done.stderr
    hub = tag("generate", "rain", "-b", "stable_audio_3", "-d", "1", "-q", "-O",
              "weights=stabilityai/stable-audio-3-medium", "--device", "cpu", "-o", str(tmp_path / "y.wav"),
              tmp_path=tmp_path)
    assert hub.returncode == 2 and "never downloaded implicitly" in hub.stderr
    assert "tag models pull stable_audio_3 --variant medium --dest DIR" in hub.stderr


def test_models_check_reports_the_limit(sa3_folder, tmp_path):
    done = tag("models", "check", "stable_audio_3", str(sa3_folder), tmp_path=tmp_path)
    assert done.returncode == 0 and "6 s clips at most" in done.stdout


def test_tag_bench_runs_both_backends(sa3_folder, sao_folder, tmp_path):
    out = tmp_path / "bench"
    done = tag("bench", "-b", "stable_audio_3", "-b", "stable_audio_open", "-n", "1", "--batch", "1", "-d", "1",
               "-O", f"stable_audio_3.weights={sa3_folder}", "-O", f"stable_audio_open.weights={sao_folder}",
               "-O", "stable_audio_open.steps=3", "-O", "device=cpu", "-o", str(out), tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 3 and "stable_audio_3:tiny-sa3" in rows[1] and "stable_audio_open:tiny-sao" in rows[2]


def test_models_pull_offline_says_why(tmp_path):
    done = tag("models", "pull", "stable_audio_3", "--variant", "small-sfx", "--dest", str(tmp_path / "w"),
               tmp_path=tmp_path)  # the suite runs with HF_HUB_OFFLINE=1: the hub cannot be asked
    assert done.returncode == 2 and "stabilityai/stable-audio-3-small-sfx" in done.stderr
    assert "could not" in done.stderr and "Traceback" not in done.stderr
    bad = tag("models", "pull", "stable_audio_3", "--variant", "large", "--dest", str(tmp_path / "w"),
              tmp_path=tmp_path)
    assert bad.returncode == 2 and "small-sfx" in bad.stderr

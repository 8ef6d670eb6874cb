"""End to end through the documented commands on the tiny folder: lyrics in, 48 kHz stereo out."""
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

LYRICS = "[verse]\nour cat sleeps\n[chorus]\noh cat"


def tag(*args: str, tmp_path, config: str = "none.toml"):
    """`tag ARGS` in this process (the model stays imported; one subprocess test covers the real command)."""
    plugins.get_plugin_manager().hook.register_commands(cli=cli)  # what `tag` (cli.main) does at start
    result = CliRunner().invoke(cli, list(args), env={"TAG_CONFIG": str(tmp_path / config)}, catch_exceptions=False)
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


def test_the_tag_command_writes_the_song(turbo_folder, ace, tmp_path):
    out = tmp_path / "song.wav"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TAG_CONFIG=str(tmp_path / "none.toml"))
    done = subprocess.run(["tag", "generate", "cheerful folk song about our cat", "-b", "ace_step", "-d", "10",
                           "--seed", "4", "-q", "-O", f"weights={turbo_folder}", "-O", f"lyrics={LYRICS}",
                           "--device", "cpu", "-o", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.frames) == (48000, 2, 480000)
    written, _ = sf.read(str(out), dtype="float32", always_2d=True)
    expected = ace.generate("cheerful folk song about our cat", 10.0, seed=4, options={"lyrics": LYRICS})
    assert np.abs(written - expected.audio.samples.T).max() <= 1e-3 + 1 / 32768
    assert np.abs(written[:, 0] - written[:, 1]).max() > 1e-3  # left and right differ: stereo kept


def test_flac_keeps_48k_stereo_and_json_reports_the_lyrics(turbo_folder, tmp_path):
    out = tmp_path / "song.flac"
    done = tag("generate", "pop", "-b", "ace-step", "-d", "10", "--seed", "1", "-q", "-O", f"weights={turbo_folder}",
               "-O", "lyrics=[verse]\nhello", "-O", "steps=2", "--device", "cpu", "-o", str(out), "--json",
               tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (sf.info(str(out)).samplerate, sf.info(str(out)).channels) == (48000, 2)
    metadata = json.loads(done.stdout.splitlines()[-1])["metadata"]
    assert metadata["instrumental"] is False and metadata["lyrics_chars"] == len("[verse]\nhello")
    assert metadata["steps"] == 2


@pytest.mark.parametrize("args,message", [
    (["-d", "9"], "10 to"),  # ACE-Step's shortest song
    (["-O", "steps=0"], "steps"),
    (["-O", "audio_role=voice"], "audio_role"),
    (["--negative-prompt", "rain"], "negative"),
    (["--audio-prompt", "CLIP"], "shorter than"),  # a 12 s clip cannot be continued into 10 s
])
def test_bad_input_exits_2_with_one_line(turbo_folder, tmp_path, args, message):
    clip = tmp_path / "clip.wav"
    sf.write(str(clip), np.zeros((12 * 48000, 2), np.float32), 48000)
    args = [str(clip) if a == "CLIP" else a for a in args]
    done = tag("generate", "a song", "-b", "ace_step", "-d", "10", "-q", *args, "-O", f"weights={turbo_folder}",
               "--device", "cpu", "-o", str(tmp_path / "x.wav"), tmp_path=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.wav").exists()


def test_backends_lists_lyrics_roles_limit_and_missing_files(turbo_folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(turbo_folder, broken)
    (broken / "condition_encoder" / "diffusion_pytorch_model.safetensors").unlink()
    (tmp_path / "good.toml").write_text(f'[backends.ace_step]\nweights = "{turbo_folder}"\n')
    (tmp_path / "bad.toml").write_text(f'[backends.ace_step]\nweights = "{broken}"\n')
    good = {row["name"]: row for row in json.loads(tag("backends", "--json", tmp_path=tmp_path,
                                                        config="good.toml").stdout)}["ace_step"]
    assert good["audio_prompt_roles"] == ["continuation", "variation"] and good["weights"]["present"]
    assert (good["sample_rate"], good["min_duration"], good["max_duration"]) == (48000, 10.0, 600.0)
    assert "lyrics" in {o["name"] for o in good["options"]}
    bad = {row["name"]: row for row in json.loads(tag("backends", "--json", tmp_path=tmp_path,
                                                       config="bad.toml").stdout)}["ace_step"]
    assert not bad["weights"]["present"]
    assert "condition_encoder/diffusion_pytorch_model.safetensors" in bad["weights"]["detail"]
    assert "tag models pull ace_step --variant xl-turbo --dest DIR" in bad["weights"]["detail"]


def test_generate_with_missing_weights_names_the_file(turbo_folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(turbo_folder, broken)
    (broken / "vae" / "config.json").unlink()
    done = tag("generate", "song", "-b", "ace_step", "-d", "10", "-q", "-O", f"weights={broken}",
               "--device", "cpu", "-o", str(tmp_path / "x.wav"), tmp_path=tmp_path)
    assert done.returncode == 2 and "vae/config.json" in done.stderr and "tag models pull ace_step" in done.stderr
    hub = tag("generate", "song", "-b", "ace_step", "-d", "10", "-q", "--device", "cpu",
              "-o", str(tmp_path / "y.wav"), tmp_path=tmp_path)  # the default hub id, not in the cache
    assert hub.returncode == 2 and "never downloaded implicitly" in hub.stderr
    assert "ACE-Step/acestep-v15-xl-turbo-diffusers" in hub.stderr


def test_models_check_reports_limit_and_roles(turbo_folder, tmp_path):
    done = tag("models", "check", "ace_step", str(turbo_folder), tmp_path=tmp_path)
    assert done.returncode == 0 and "up to 600 s" in done.stdout and "continuation and variation" in done.stdout
    empty = tag("models", "check", "ace_step", str(tmp_path), tmp_path=tmp_path)
    assert empty.returncode == 2 and "model_index.json" in empty.stderr


def test_models_pull_arguments_and_offline_message(tmp_path):
    done = tag("models", "pull", "ace_step", "--dest", str(tmp_path / "w"),
               tmp_path=tmp_path)  # the suite runs with HF_HUB_OFFLINE=1: the hub cannot be asked
    assert done.returncode == 2 and "ACE-Step/acestep-v15-xl-turbo-diffusers" in done.stderr
    assert "could not" in done.stderr and "Traceback" not in done.stderr
    assert "downloading ACE-Step/acestep-v15-xl-turbo-diffusers into" in done.stdout
    bad = tag("models", "pull", "ace_step", "--variant", "large", "--dest", str(tmp_path / "w"), tmp_path=tmp_path)
    assert bad.returncode == 2 and "xl-turbo" in bad.stderr
    missing = tag("models", "pull", "ace_step", tmp_path=tmp_path)
    assert missing.returncode == 2 and "--dest" in missing.stderr

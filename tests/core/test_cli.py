"""The `tag` command line: the whole flow CLI -> in-process transport -> worker -> backend -> file."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from tag_testkit.tone import ToneBackend, tone_frequency
from tagcore.cli import cli

TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TAG_CONFIG", str(tmp_path / "absent.toml"))

    def invoke(*args: str):
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)

    return invoke


def peak_frequency(path: Path) -> float:
    data, rate = sf.read(path)
    spectrum = np.abs(np.fft.rfft(data))
    return float(np.fft.rfftfreq(len(data), 1 / rate)[spectrum.argmax()])


def test_generate_writes_a_pcm16_wav_trimmed_to_the_duration(run, tmp_path):
    result = run("generate", "rain on a tin roof", "-b", "tone", "-d", "1.25", "--seed", "7", "-o", "rain.wav", "-q")
    assert result.exit_code == 0, result.output
    assert "seed 7" in result.output
    info = sf.info(tmp_path / "rain.wav")
    assert info.subtype == "PCM_16" and info.frames == 20000 and info.samplerate == 16000
    assert abs(peak_frequency(tmp_path / "rain.wav") - tone_frequency("rain on a tin roof")) <= 1
    data, _ = sf.read(tmp_path / "rain.wav")
    assert abs(np.abs(data).max() - 0.5) < 1e-3  # no gain change


def test_options_formats_normalize_and_json(run, tmp_path):
    result = run("generate", "hum", "-b", "sine", "-d", "1", "-O", "amplitude=0.1", "--normalize", "--format", "ogg",
                 "-o", "hum", "--json")
    assert result.exit_code == 0, result.output
    info = sf.info(tmp_path / "hum.ogg")
    assert info.subtype == "OPUS"
    assert '"backend": "tone"' in result.output and '"seed": ' in result.output
    data, _ = sf.read(tmp_path / "hum.ogg")
    assert np.abs(data).max() > 0.5


def test_candidates_reported(run):
    result = run("generate", "c", "-b", "tone", "-d", "1", "-n", "3", "--json", "-q")
    assert result.exit_code == 0
    assert '"chosen_candidate": 0' in result.output


def test_prompts_file_lines_and_csv_batch_into_an_output_folder(run, tmp_path):
    (tmp_path / "p.txt").write_text("dog barking\n# a comment\n\nwind in trees\nthunder\n")
    ToneBackend.batches.clear()
    result = run("generate", "--prompts", "p.txt", "-b", "tone", "-d", "1", "--out-dir", "clips", "--seed", "1", "-q")
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "clips").iterdir())
    assert [f.name.split("-", 1)[0] for f in files] == ["001", "002", "003"]
    assert max(ToneBackend.batches) > 1  # the three prompts shared a backend call
    (tmp_path / "caps.csv").write_text("audiocap_id,caption,duration\n1,a car passes,1.5\n2,\"birds, many\",2\n")
    result = run("generate", "--prompts", "caps.csv", "-b", "tone", "--out-dir", "caps", "-q")
    assert result.exit_code == 0, result.output
    lengths = sorted(sf.info(f).frames for f in (tmp_path / "caps").iterdir())
    assert lengths == [24000, 32000]


@pytest.mark.parametrize("args, message", [
    (["generate", "", "-b", "tone"], "prompt is empty"),
    (["generate", "   ", "-b", "tone"], "prompt is empty"),
    (["generate", "x" * 501, "-b", "tone"], "limit is 500"),
    (["generate", "x", "-b", "tone", "-d", "0"], "out of range"),
    (["generate", "x", "-b", "tone", "-d", "-3"], "out of range"),
    (["generate", "x", "-b", "tone", "-d", "31"], "out of range"),
    (["generate", "x", "-b", "tone", "-d", "nan"], "must be a number of seconds"),
    (["generate", "x", "-b", "nosuch"], "unknown backend 'nosuch'"),
    (["generate", "x", "-b", "tone", "-O", "steps=3"], "no option 'steps'"),
    (["generate", "x", "-b", "tone", "-O", "amplitude=loud"], "not a valid float"),
    (["generate", "x", "-b", "tone", "-O", "amplitude"], "KEY=VALUE"),
    (["generate", "x", "-b", "tone", "-O", "weights=/nonexistent", "-d", "1"], "/nonexistent/tone.json is missing"),
    (["generate", "-b", "tone"], "either a PROMPT or --prompts"),
])
def test_bad_input_exits_2_with_a_clear_message(run, args, message):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_failed_generation_exits_1(run):
    result = run("generate", "x", "-b", "tone", "-d", "1", "-O", "fail=true", "-q")
    assert result.exit_code == 1 and "asked to fail" in result.output


def test_backends_lists_options_defaults_and_weights(run, tmp_path):
    result = run("backends")
    assert result.exit_code == 0
    assert "tone (aliases: sine)" in result.output and "-O amplitude=0.5" in result.output
    assert "weights: present at built in" in result.output
    (tmp_path / "w").mkdir()
    os.environ["TAG_TONE_WEIGHTS"] = str(tmp_path / "w")
    try:
        result = run("backends")
    finally:
        del os.environ["TAG_TONE_WEIGHTS"]
    assert f"weights: MISSING at {tmp_path / 'w' / 'tone.json'}" in result.output


def test_worker_refuses_the_in_process_transport(run):
    result = CliRunner().invoke(cli, ["worker", "-b", "tone"])
    assert result.exit_code == 2 and "only reaches this process" in result.output


def test_installed_console_script_end_to_end(tmp_path):
    """The real `tag` executable in a fresh process, with the test plugin loaded through the environment."""
    env = dict(os.environ, TAG_PLUGIN_MODULES="tag_testkit.tone", PYTHONPATH=str(TESTS),
               TAG_CONFIG=str(tmp_path / "absent.toml"))
    tag = Path(sys.executable).with_name("tag")
    help_run = subprocess.run([tag, "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert help_run.returncode == 0 and "generate" in help_run.stdout
    gen = subprocess.run([tag, "generate", "a bell", "-b", "tone", "-d", "2", "--seed", "3", "-o", "bell.flac"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert gen.returncode == 0, gen.stderr
    assert sf.info(tmp_path / "bell.flac").frames == 32000


def test_default_duration_is_ten_seconds_or_for_speech_the_longest_allowed():
    from tag_testkit.tone import VoiceToneBackend
    from tagcore.cli import DEFAULT_DURATION
    from tagcore.config import Config
    from tagcore.validation import default_duration

    assert default_duration(ToneBackend.spec({}), Config(max_duration=30.0), DEFAULT_DURATION) == 10.0
    assert default_duration(ToneBackend.spec({}), Config(max_duration=4.0), DEFAULT_DURATION) == 4.0
    assert default_duration(VoiceToneBackend.spec({}), Config(max_duration=30.0), DEFAULT_DURATION) == 30.0

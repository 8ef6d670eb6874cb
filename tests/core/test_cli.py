"""The `tag` command line: the whole flow CLI -> in-process transport -> worker -> backend -> file."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from tag_testkit.tone import ToneBackend, tone_frequency
from tagcore import plugins
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
    # a request option where only worker options are read would be ignored: it is refused, naming where it goes
    (["worker", "--transport", "rabbitmq", "-b", "tone", "-O", "delay=1"],
     "option delay of tone is a request option: give it with each request (tag generate -O delay=..."),
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
    tone = re.split(r"\n(?=\S)", result.output.split("tone (aliases: sine)")[1])[0]  # up to the next backend
    option_lines = [line for line in tone.splitlines() if line.startswith("    -O ")]
    type_columns = {re.match(r" +-O \S+ +", line).end() for line in option_lines}  # names and defaults padded alike
    assert len(option_lines) > 2 and len(type_columns) == 1
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



# -- mistakes are found before any model loads, and never cost a generated clip --------------------------------
# make_an_audio with a missing weights folder: if the CLI got as far as loading, the error would name the weights.
NO_MODEL = ["-b", "make_an_audio", "-O", "weights=/nonexistent/maa", "-d", "2"]


@pytest.mark.parametrize("args, message", [
    (["-o", "x.mp3"], "not .mp3"),
    (["-o", "x.wav", "--format", "flac"], "--format flac contradicts"),
    (["-o", "notes.txt/x.wav"], "is a file, not a folder"),
    (["-o", "/dev/full"], "neither a regular file nor a folder"),
    (["--prompts", "binary.txt"], "is not a UTF-8 text file"),
    (["--prompts", "nul.txt"], "is a binary file"),
    (["--prompts", "comments.txt"], "holds no prompts"),
])
def test_output_and_prompts_mistakes_exit_2_before_the_model_loads(run, tmp_path, args, message):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    (tmp_path / "binary.txt").write_bytes(bytes(range(128, 256)) * 4)
    (tmp_path / "nul.txt").write_bytes(b"rain\x00\x01\x02\n")
    (tmp_path / "comments.txt").write_text("# only a comment\n\n   # another\n")
    if "/dev/full" in args and not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    prompt = [] if "--prompts" in args else ["rain"]
    result = CliRunner().invoke(cli, ["generate", *prompt, *NO_MODEL, *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "weights" not in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x.mp3").exists() and not Path("/dev/full.wav").exists()
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_folder_exits_2_before_the_model_loads(run, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = CliRunner().invoke(cli, ["generate", "rain", *NO_MODEL, "-o", str(locked / "x.wav")])
    finally:
        locked.chmod(0o700)
    assert result.exit_code == 2 and "permission denied" in result.output


def test_output_folder_means_inside_it(run, tmp_path):
    result = run("generate", "dog barks", "-b", "tone", "-d", "1", "--seed", "5", "-o", "new/", "-q")
    assert result.exit_code == 0, result.output
    assert [f.name for f in (tmp_path / "new").iterdir()] == ["dog-barks-5.wav"]
    (tmp_path / "old").mkdir()
    result = run("generate", "dog barks", "-b", "tone", "-d", "1", "--seed", "6", "-o", "old", "--format", "flac", "-q")
    assert result.exit_code == 0, result.output
    assert [f.name for f in (tmp_path / "old").iterdir()] == ["dog-barks-6.flac"]
    assert not (tmp_path / "old.wav").exists() and not (tmp_path / "new.wav").exists()
    result = run("generate", "dog barks", "-b", "tone", "-d", "1", "-o", "same.flac", "--format", "flac", "-q")
    assert result.exit_code == 0 and sf.info(tmp_path / "same.flac").format == "FLAC"


def test_a_clip_that_cannot_be_written_is_saved_elsewhere(run, tmp_path, monkeypatch):
    import errno

    from tagcore import audio as audio_io

    real_write = audio_io.write

    def disk_full(path, audio, fmt=None):
        if Path(path).name == "rain.wav":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, audio, fmt)

    monkeypatch.setattr(audio_io, "write", disk_full)
    result = run("generate", "rain", "-b", "tone", "-d", "1", "-o", "rain.wav", "-q")
    assert result.exit_code == 1
    assert "could not write rain.wav (No space left on device); the clip was saved to " in result.output
    rescued = Path(result.output.split("the clip was saved to ")[1].split()[0])
    try:
        assert sf.info(rescued).frames == 16000
    finally:
        rescued.unlink()


@pytest.mark.parametrize("environ, message", [
    ({"TAG_MAX_DURATION": "-5"}, "max_duration (TAG_MAX_DURATION) must be above 0"),
    ({"TAG_MAX_DURATION": "abc"}, "max_duration: 'abc' is not a valid float"),
    ({"TAG_MAX_BATCH": "0"}, "max_batch (TAG_MAX_BATCH) must be above 0"),
    ({"TAG_REQUEST_TIMEOUT": "nan"}, "not a valid float"),
])
def test_configuration_values_are_checked_when_read(run, monkeypatch, environ, message):
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cli, ["generate", "rain", "-b", "tone", "-d", "1"])
    assert result.exit_code == 2 and message in result.output, result.output


def test_a_mistake_only_the_worker_sees_exits_2(run):
    result = run("generate", "x", "-b", "tone", "-d", "1", "-O", "reject=true", "-q")
    assert result.exit_code == 2 and "refuses this request" in result.output


def test_unreadable_audio_prompt_is_one_clear_sentence(run, tmp_path):
    (tmp_path / "noise.wav").write_bytes(b"RIFF not really a wav file")
    result = CliRunner().invoke(cli, ["generate", "x", "-b", "tone", "-d", "1", "--audio-prompt", "noise.wav"])
    assert result.exit_code == 2 and "could not read the audio file" in result.output
    assert "BytesIO" not in result.output and "object at 0x" not in result.output


def test_a_failing_scorer_delivers_the_first_candidate_with_a_warning(run, tmp_path, monkeypatch):
    from tagcore import cli as cli_module
    from tagcore.scoring import Scorer

    class Broken(Scorer):
        name = "broken"

        def score(self, prompts, audios):
            raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(cli_module, "build_scorer", lambda config: Broken(config))
    result = run("generate", "c", "-b", "tone", "-d", "1", "-n", "3", "-o", "c.wav", "--json", "-q")
    assert result.exit_code == 0, result.output
    assert "Warning: the broken scorer failed (RuntimeError: CUDA out of memory)" in result.output
    assert '"chosen_candidate": 0' in result.output and (tmp_path / "c.wav").is_file()


@pytest.mark.parametrize("command, environ, message", [
    ("serve", {"TAG_HTTP_RATE_LIMIT": "abc"}, "rate_limit: 'abc' is not a valid float"),
    ("bot", {}, "no Telegram bot token"),
    ("bot", {"TAG_TELEGRAM_TOKEN": "1:x", "TAG_TELEGRAM_RATE_LIMIT": "abc"}, "rate_limit"),
])
def test_frontends_check_their_settings_before_models_load(run, monkeypatch, command, environ, message):
    monkeypatch.delenv("TAG_TELEGRAM_TOKEN", raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    plugins.get_plugin_manager().hook.register_commands(cli=cli)  # `tag bot`/`tag serve` come from their plugins
    result = CliRunner().invoke(cli, [command, "-b", "make_an_audio", "-O", "weights=/nonexistent/maa"])
    assert result.exit_code == 2, result.output
    assert message in result.output and "weights" not in result.output


def test_an_embedded_worker_refuses_a_request_option_naming_where_it_goes(run):
    plugins.get_plugin_manager().hook.register_commands(cli=cli)  # `tag serve` comes from its plugin
    result = CliRunner().invoke(cli, ["serve", "-b", "tone", "-O", "amplitude=0.2"])
    assert result.exit_code == 2, result.output
    assert "option amplitude of tone is a request option: give it with each request" in result.output


def test_warmup_prepares_each_backend_for_its_default_length_at_batch_one_and_the_largest_batch():
    from tagcore.cli import warm_up_backends
    from tagcore.config import Config

    asked = []

    class Preparing(ToneBackend):
        def warm_up(self, shapes):
            asked.append((self.name, list(shapes)))
            return 1.5

    class OneAtATime(Preparing):
        name = "single"
        capabilities = ToneBackend.capabilities.__class__(seed=True, batch=False)

    backends = {"tone": Preparing(), "single": OneAtATime(), "plain": ToneBackend()}
    lines = warm_up_backends(backends, Config(max_duration=8.0), 4)
    assert asked == [("tone", [(8.0, 1), (8.0, 4)]), ("single", [(8.0, 1)])]  # default 10 s, kept within the limit
    assert lines == ["warm-up: tone, 8 s clips at batch 1 and 4: 1.5 s", "warm-up: single, 8 s clips at batch 1: 1.5 s",
                     "warm-up: plain, 8 s clips at batch 1 and 4: 0.0 s"]  # nothing to prepare by default


"""`tag bench` on the tone test backend: every column, every output file, CLAP only when a checkpoint is given."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

import tag_testkit.tone
from tag_testkit.tone import VoiceToneBackend
from tagcore import hookimpl, plugins
from tagcore.cli import cli
from tag_bench.prompts import bundled_prompts_path, load_prompts
from tag_bench.runner import COLUMNS
from tag_testkit.tiny_clap import ensure_tiny_clap

OUTPUTS = ("results.csv", "results.md", "meta.json", "speed_vs_steps.png", "clap_vs_steps.png",
           "throughput_vs_batch.png")


@contextmanager
def tone_kit() -> Iterator[None]:
    """The kit's tone backends registered while the block runs. Other test modules in the same process (pytest-xdist
    runs several files per worker) may have registered them already and go on relying on them: those are kept."""
    registered_here = not plugins.get_plugin_manager().has_plugin("tag_testkit.tone")
    if registered_here:
        plugins.register_plugin(tag_testkit.tone, name="tag_testkit.tone")
    try:
        yield
    finally:
        if registered_here:
            plugins.unregister_plugin("tag_testkit.tone")


@pytest.fixture(scope="module")
def tag():
    with tone_kit():
        plugins.get_plugin_manager().hook.register_commands(cli=cli)
        yield lambda *args: CliRunner().invoke(cli, list(args), catch_exceptions=False)


def read_rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_bundled_prompt_set_has_fifty_prompts():
    prompts = load_prompts(None)
    assert len(prompts) == 50 and len(set(prompts)) == 50
    assert bundled_prompts_path().name == "tag50.txt"


def test_user_prompt_files_text_and_audiocaps_csv(tmp_path):
    text = tmp_path / "p.txt"
    text.write_text("a dog barks\n\n# comment\nrain falls\n")
    assert load_prompts(text) == ["a dog barks", "rain falls"]
    audiocaps = tmp_path / "test.csv"
    audiocaps.write_text('audiocap_id,youtube_id,start_time,caption\n1,abc,30,"A man speaks, then a dog barks"\n'
                         "2,def,0,Wind blows\n")
    assert load_prompts(audiocaps) == ["A man speaks, then a dog barks", "Wind blows"]
    assert load_prompts(audiocaps, limit=1) == ["A man speaks, then a dog barks"]


def test_bench_writes_every_column_and_file_with_clap_na(tag, tmp_path):
    out = tmp_path / "run"
    result = tag("bench", "-b", "tone", "-n", "3", "--batch", "1,2", "-d", "1,2", "-O", "delay=0.01",
                 "-O", "amplitude=0.3", "-o", str(out))
    assert result.exit_code == 0, result.output
    for name in OUTPUTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "speed_vs_steps.png").read_bytes()[:4] == b"\x89PNG"
    rows = read_rows(out)
    assert len(rows) == 4 and tuple(rows[0]) == COLUMNS
    assert {(r["batch"], r["duration"]) for r in rows} == {("1", "1.0"), ("1", "2.0"), ("2", "1.0"), ("2", "2.0")}
    for row in rows:
        assert row["backend"] == "tone" and row["model_id"] == "tone-v1" and row["clips"] == "3"
        assert row["steps"] == "n/a"  # tone has no steps option
        assert row["clap"] == "n/a" and row["fad"] == "n/a" and row["cuda_peak_mb"] == "n/a"
        assert float(row["s_per_clip"]) >= 0.01 / 2  # at least the simulated delay per batch of 2
        assert float(row["rtf"]) == pytest.approx(float(row["s_per_clip"]) / float(row["duration"]))
        assert float(row["peak_rss_mb"]) > 10 and float(row["load_s"]) >= 0
    markdown = (out / "results.md").read_text()
    assert "| backend | model |" in markdown and "CLAP" in markdown and "versions:" in markdown


def test_bench_rejects_bad_plans_before_loading(tag, tmp_path):
    result = tag("bench", "-b", "tone", "-O", "nonsense=1", "-o", str(tmp_path / "x"))
    assert result.exit_code == 2 and "nonsense" in result.output
    result = tag("bench", "-b", "tone", "-d", "500", "-o", str(tmp_path / "x"))
    assert result.exit_code == 2 and "500" in result.output
    result = tag("bench", "-b", "tone", "--fad-reference", str(tmp_path), "-o", str(tmp_path / "x"))
    assert result.exit_code == 2 and "CLAP checkpoint" in result.output
    assert not (tmp_path / "x").exists()


class _VoiceTonePlugin:
    @hookimpl
    def register_backends(self, register) -> None:
        register(VoiceToneBackend)


def test_rows_of_finished_backends_survive_a_later_backend_failing(tag, tmp_path):
    plugins.register_plugin(_VoiceTonePlugin(), name="bench-test-voice-tone")
    try:
        out = tmp_path / "run"
        result = tag("bench", "-b", "tone", "-b", "voice_tone", "-n", "1", "-d", "1",
                     "-O", f"voice_tone.weights={tmp_path / 'missing'}", "-o", str(out))
    finally:
        plugins.unregister_plugin("bench-test-voice-tone")
    assert result.exit_code == 2 and "tone.json" in result.output
    assert [row["backend"] for row in read_rows(out)] == ["tone"]


@pytest.mark.slow
def test_bench_with_tiny_clap_reports_clap_and_fad(tmp_path_factory, tmp_path):
    from tagcore.audio import write
    from tagcore.audio_types import Audio
    import numpy as np

    hf_home, checkpoint = ensure_tiny_clap(tmp_path_factory.getbasetemp())
    reference = tmp_path / "reference"
    for i in range(3):
        write(reference / f"r{i}.wav", Audio(0.3 * np.sin(np.arange(16000) * (0.05 + 0.02 * i)), 16000))
    out = tmp_path / "run"
    tests_dir = str(Path(__file__).parent.parent)
    env = dict(os.environ, HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TAG_PLUGIN_MODULES="tag_testkit.tone", TAG_CLAP_DEVICE="cpu",
               PYTHONPATH=os.pathsep.join(filter(None, [tests_dir, os.environ.get("PYTHONPATH")])))
    done = subprocess.run([str(Path(sys.executable).with_name("tag")), "bench", "-b", "tone", "-n", "3", "-d", "1",
                           "--clap-checkpoint", str(checkpoint), "--fad-reference", str(reference), "-o", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    (row,) = read_rows(out)
    assert -1.0 <= float(row["clap"]) <= 1.0
    assert float(row["fad"]) >= 0.0
    assert "tiny-clap.pt (HTSAT-tiny, no fusion)" in (out / "results.md").read_text()


def test_scoped_options_reach_only_their_backend(tag, tmp_path):
    out = tmp_path / "run"
    result = tag("bench", "-b", "tone", "-n", "1", "-d", "1", "-O", "amplitude=0.9", "-O", "tone.amplitude=0.2",
                 "-O", "tone.delay=0", "-o", str(out))
    assert result.exit_code == 0, result.output
    result = tag("bench", "-b", "tone", "-O", "tone.nonsense=1", "-o", str(tmp_path / "x"))
    assert result.exit_code == 2 and "tone has no option nonsense" in result.output
    result = tag("bench", "-b", "tone", "-O", "audiogen.weights=/x", "-o", str(tmp_path / "x"))
    assert result.exit_code == 2 and "audiogen.weights" in result.output  # audiogen is not in this run
    assert not (tmp_path / "x").exists()


def test_backend_options_scoped_key_wins_for_its_backend_only():
    from tag_bench.runner import Plan, backend_options

    with tone_kit():
        plan = Plan(backends=["tone"], prompts=["x"], options={"amplitude": "0.9", "tone.amplitude": "0.2",
                                                             "delay": "0.1"})
        assert backend_options("tone", plan) == {"amplitude": "0.2", "delay": "0.1"}


@pytest.fixture(scope="module")
def tiny_random_weights(tmp_path_factory) -> Path:
    """Every model backend at the tests' tiny size, written by the benchmark's own weight writer."""
    pytest.importorskip("audiocraft")
    root = tmp_path_factory.mktemp("random")
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "random_weights.py"
    done = subprocess.run([sys.executable, str(script), str(root), "--tiny",
                           "make_an_audio,audiogen,speecht5,mms_tts,bark"], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert done.returncode == 0, done.stderr[-4000:]
    return root


def test_random_weights_config_points_each_backend_at_its_folder(tiny_random_weights):
    from tagcore.config import load_config

    config = load_config(tiny_random_weights / "tag.toml", environ={})
    assert config.backend_settings("make_an_audio")["weights"] == str(tiny_random_weights / "make_an_audio")
    assert config.backend_settings("speecht5")["vocoder"].endswith("speecht5_hifigan")
    assert (tiny_random_weights / "make_an_audio" / "maa1_full.ckpt").is_file()
    assert (tiny_random_weights / "audiogen" / "state_dict.bin").is_file()
    assert (Path(config.backend_settings("bark")["weights"]) / "speaker_embeddings_path.json").is_file()


def test_bench_on_tiny_model_backends_fills_every_column(tag, tiny_random_weights, tmp_path):
    """Four real backends in one run, each pointed at its own folder with BACKEND.weights; steps only where they
    apply; every measured column holds a number and only CLAP/FAD/CUDA are n/a (no checkpoint, no GPU)."""
    root = tiny_random_weights
    out = tmp_path / "run"
    result = tag("bench", "-b", "make_an_audio", "-b", "audiogen", "-b", "speecht5", "-b", "mms_tts",
                 "-n", "2", "--steps", "2,3", "--batch", "1,2", "-d", "1", "-O", "device=cpu",
                 "-O", f"make_an_audio.weights={root / 'make_an_audio'}", "-O", f"audiogen.weights={root / 'audiogen'}",
                 "-O", f"speecht5.weights={root / 'speecht5' / 'speecht5_tts'}",
                 "-O", f"speecht5.vocoder={root / 'speecht5' / 'speecht5_hifigan'}",
                 "-O", f"mms_tts.weights={root / 'mms_tts' / 'mms_tts'}", "--note", "tiny random", "-o", str(out))
    assert result.exit_code == 0, result.output
    rows = read_rows(out)
    assert tuple(rows[0]) == COLUMNS
    cells = {(r["backend"], r["steps"], r["batch"]) for r in rows}
    assert cells == {("make_an_audio", s, b) for s in ("2", "3") for b in ("1", "2")} | {
        (name, "n/a", b) for name in ("audiogen", "speecht5", "mms_tts") for b in ("1", "2")}
    numeric = [c for c in COLUMNS if c not in ("backend", "model_id", "device", "dtype", "steps", "clap", "fad",
                                                 "cuda_peak_mb", "wer", "speaker_sim")]
    for row in rows:
        assert row["model_id"] and row["device"] == "cpu" and row["dtype"] == "float32", row
        assert row["clap"] == "n/a" and row["fad"] == "n/a" and row["cuda_peak_mb"] == "n/a"
        assert row["wer"] == "n/a" and row["speaker_sim"] == "n/a"
        values = {c: float(row[c]) for c in numeric}
        assert values["clips"] == 2 and values["audio_s"] > 0 and values["s_per_clip"] > 0, row
        assert values["rtf"] == pytest.approx(values["s_per_clip"] / values["audio_s"], rel=1e-6)
        assert values["peak_rss_mb"] > 10 and values["load_s"] > 0
    meta = (out / "meta.json").read_text()
    assert '"load_average_start"' in meta and '"note": "tiny random"' in meta
    assert "load average (1 min)" in (out / "results.md").read_text()

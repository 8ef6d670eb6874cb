"""Speech quality in `tag bench`: WER against the prompt text and speaker similarity to the voice sample.

The scoring models here are tiny random ones built by the tests, so their numbers only prove the plumbing; the
WER arithmetic itself is checked on known strings.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from tag_bench.speech_quality import ModelSpeechQuality
from tag_bench.wer import normalise, word_error_rate
from tag_testkit import tiny_speech
from tag_testkit.tone import VoiceToneBackend
from tagcore import hookimpl, plugins
from tagcore.audio_types import Audio
from tagcore.cli import cli


@pytest.mark.parametrize("reference, heard, expected", [
    ("the cat sat on the mat", "the cat sat on the mat", 0.0),
    ("The cat sat on the mat.", "the cat, sat on the mat", 0.0),  # case and punctuation do not count
    ("the cat sat on the mat", "the cat sit on mat", 2 / 6),  # one substitution, one deletion
    ("hello there", "", 1.0),
    ("hello there", "oh hello out there friend", 3 / 2),  # insertions can push WER above 1
    ("it's fine", "its fine", 1 / 2),
])
def test_word_error_rate_on_known_strings(reference, heard, expected):
    assert word_error_rate([reference], [heard]) == pytest.approx(expected)


def test_harvard_sentences_are_a_bundled_prompt_set():
    from tag_bench.prompts import bundled_prompts_path, load_prompts

    prompts = load_prompts(bundled_prompts_path().with_name("harvard10.txt"))
    assert len(prompts) == 10 and prompts[0] == "The birch canoe slid on the smooth planks."


def test_corpus_wer_weighs_texts_by_their_words():
    assert word_error_rate(["a b c d", "e f"], ["a b c d", "x y"]) == pytest.approx(2 / 6)
    assert normalise("Don’t STOP—now!") == ["don't", "stop", "now"]
    with pytest.raises(ValueError, match="no words"):
        word_error_rate(["..."], ["a"])


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("scoring")
    tts, vocoder = tiny_speech.build_speecht5(root)
    return {"whisper": tiny_speech.build_whisper(root), "encoder": tiny_speech.build_speaker_encoder(root),
            "speecht5": tts, "vocoder": vocoder, "mms": tiny_speech.build_mms(root)}


def voice(seconds: float, pitch: float) -> Audio:
    t = np.arange(int(seconds * 16000)) / 16000
    return Audio(0.3 * np.sin(2 * np.pi * pitch * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2, 16000)


def test_scores_come_from_the_given_models(models):
    from tag_speech.mms import MmsTtsBackend
    from tag_speech.speecht5 import SpeechT5Backend

    scorer = ModelSpeechQuality(str(models["whisper"]), str(models["encoder"]), device="cpu")
    sample, other = voice(3.0, 150.0), voice(3.0, 90.0)
    transcript = scorer.transcribe(sample)
    assert transcript and transcript == scorer.transcribe(sample)  # the tiny model says random letters
    assert scorer.similarity(sample, [sample]) == pytest.approx(1.0, abs=1e-5)
    assert scorer.similarity(sample, [other]) < 1.0 - 1e-4
    assert scorer.similarity(sample, [Audio(np.zeros(8000), 16000)]) is None  # nothing embeddable
    prompts = ["hello there", "pack my box"]
    wer, similarity = scorer.measure(SpeechT5Backend, prompts, [sample, other], sample)
    assert wer == pytest.approx(word_error_rate(prompts, [transcript, scorer.transcribe(other)]))
    assert similarity == pytest.approx(np.mean([1.0, scorer.similarity(sample, [other])]), abs=1e-5)
    assert scorer.measure(MmsTtsBackend, prompts, [sample, other], sample)[1] is None  # MMS clones no voices


class _VoiceTonePlugin:
    @hookimpl
    def register_backends(self, register) -> None:
        register(VoiceToneBackend)


@pytest.fixture
def bench():
    plugins.register_plugin(_VoiceTonePlugin(), name="speech-scores-voice-tone")
    plugins.get_plugin_manager().hook.register_commands(cli=cli)
    yield lambda *args: CliRunner().invoke(cli, list(args), catch_exceptions=False)
    plugins.unregister_plugin("speech-scores-voice-tone")


def test_bench_reports_wer_and_speaker_similarity_only_where_they_apply(bench, models, tmp_path):
    """mms_tts speaks but clones no voice (WER only); voice_tone clones but does not speak (similarity only)."""
    sf.write(tmp_path / "me.wav", voice(4.0, 140.0).samples[0], 16000)
    out = tmp_path / "run"
    args = ["bench", "-b", "mms_tts", "-b", "voice_tone", "-n", "2", "-d", "2", "-O", "mms_tts.device=cpu",
            "-O", f"mms_tts.weights={models['mms']}", "-O", "voice_tone.delay=0", "--no-warmup"]
    result = bench(*args, "--asr-model", str(models["whisper"]), "--speaker-encoder", str(models["encoder"]),
                   "--voice-sample", str(tmp_path / "me.wav"), "-o", str(out))
    assert result.exit_code == 0, result.output
    rows = {r["backend"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert float(rows["mms_tts"]["wer"]) >= 0 and rows["mms_tts"]["speaker_sim"] == "n/a"
    assert -1.0 <= float(rows["voice_tone"]["speaker_sim"]) <= 1.0 and rows["voice_tone"]["wer"] == "n/a"
    report = (out / "results.md").read_text()
    assert f"- WER: ASR model {models['whisper']}" in report and "| WER | speaker sim |" in report
    assert json.loads((out / "meta.json").read_text())["voice_sample"] == str(tmp_path / "me.wav")

    bare = tmp_path / "bare"
    result = bench(*args, "-o", str(bare))
    assert result.exit_code == 0, result.output
    for row in csv.DictReader((bare / "results.csv").open()):
        assert row["wer"] == "n/a" and row["speaker_sim"] == "n/a"
    report = (bare / "results.md").read_text()
    assert "WER: n/a: no --asr-model" in report and "speaker sim: n/a: no --speaker-encoder" in report


def test_a_missing_asr_folder_is_named(tmp_path):
    from tagcore.errors import WeightsMissing

    with pytest.raises(WeightsMissing, match="ASR model folder .*nowhere does not exist"):
        ModelSpeechQuality(str(tmp_path / "nowhere"), None, device="cpu")

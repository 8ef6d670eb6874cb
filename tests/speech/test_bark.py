"""Bark on a tiny model saved in the suno/bark-small layout (BarkModel + BarkProcessor with voice presets)."""
import json
import logging
import shutil

import numpy as np
import pytest

from tag_speech.bark import BarkBackend
from tag_testkit.tiny_speech import BARK_PRESETS
from tagcore.errors import InvalidRequest, WeightsMissing
from tagcore.plugins import backends

TEXT = "Hello there. Pack my box."


def test_bark_is_registered_as_a_24_khz_variable_length_backend():
    cls = backends().get("bark")
    assert cls is BarkBackend and cls.sample_rate == 24000 and cls.variable_length
    assert not cls.capabilities.batch and not cls.capabilities.audio_prompt


def test_same_seed_same_speech_and_the_preset_is_the_voice(bark, caplog):
    with caplog.at_level(logging.WARNING):
        first, again = bark.generate(TEXT, 10.0, seed=7), bark.generate(TEXT, 10.0, seed=7)
    assert not [r.message for r in caplog.records if r.name.startswith("transformers.generation")]
    assert np.array_equal(first.audio.samples, again.audio.samples)
    assert first.audio.sample_rate == 24000 and first.seed == 7
    meta = first.metadata
    assert meta["voice"] == "preset v2/en_speaker_6" and meta["sentences"] == meta["sentences_spoken"] == 2
    assert first.audio.frames == pytest.approx(meta["speech_seconds"] * 24000, abs=12)
    assert first.audio.frames < 10 * 24000 and not meta["truncated"]
    assert np.any(first.audio.samples) and first.model_id == f"bark:{bark.folder}"
    unprompted = bark.generate(TEXT, 10.0, seed=7, options={"voice_preset": "none"})
    assert unprompted.metadata["voice"] == "random (no preset; follows the seed)"
    assert not np.array_equal(first.audio.samples, unprompted.audio.samples)


def test_long_sentences_are_split_for_bark_and_truncated_with_a_notice(bark):
    text = " ".join(["pack my box with five dozen liquor jugs,"] * 9)  # one 368-character sentence
    result = bark.generate(text, 1.0, seed=1)
    meta = result.metadata
    assert meta["sentences"] == 3 and meta["truncated"] and meta["sentences_spoken"] < 3
    assert result.audio.frames <= 24000 and "longer duration" in meta["notice"]


def test_unknown_voice_preset_lists_the_known_ones(bark):
    with pytest.raises(InvalidRequest, match=r"unknown Bark voice preset 'v2/xx_speaker_9'.*v2/en_speaker_6"):
        bark.generate("Hello.", 2.0, seed=1, options={"voice_preset": "v2/xx_speaker_9"})
    with pytest.raises(InvalidRequest, match="unknown Bark voice preset '../../etc/passwd'"):
        bark.generate("Hello.", 2.0, seed=1, options={"voice_preset": "../../etc/passwd"})


def test_missing_folder_and_missing_files_are_named(tmp_path, bark_folder):
    with pytest.raises(WeightsMissing, match="does not exist.*hf download suno/bark-small --local-dir"):
        BarkBackend({"weights": str(tmp_path / "nowhere"), "device": "cpu"}).load()
    folder = tmp_path / "bark"
    shutil.copytree(bark_folder, folder)
    (folder / "generation_config.json").unlink()
    status = BarkBackend.weights_status({"weights": str(folder)})
    assert not status.present and "generation_config.json" in status.detail
    with pytest.raises(WeightsMissing, match="lacks generation_config.json"):
        BarkBackend({"weights": str(folder), "device": "cpu"}).load()
    assert BarkBackend.weights_status({"weights": str(bark_folder)}).present


def test_missing_preset_file_is_weights_missing_and_no_presets_is_explained(tmp_path, bark_folder):
    folder = tmp_path / "bark"
    shutil.copytree(bark_folder, folder)
    presets = json.loads((folder / "speaker_embeddings_path.json").read_text())
    (folder / presets["v2/en_speaker_6"]["fine_prompt"]).unlink()
    backend = BarkBackend({"weights": str(folder), "device": "cpu"})
    with pytest.raises(WeightsMissing, match="voice preset v2/en_speaker_6: .*en_speaker_6_fine_prompt.npy is missing"):
        backend.generate("Hello.", 2.0, seed=1)
    (folder / "speaker_embeddings_path.json").unlink()
    bare = BarkBackend({"weights": str(folder), "device": "cpu"})
    with pytest.raises(InvalidRequest, match="has no voice presets .*voice_preset=none"):
        bare.generate("Hello.", 2.0, seed=1)


def test_hub_default_offline_says_how_to_download(monkeypatch, tmp_path):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    status = BarkBackend.weights_status({})
    assert not status.present and status.location == "suno/bark-small"
    assert "hf download suno/bark-small" in status.detail
    with pytest.raises(WeightsMissing, match="hf download suno/bark-small"):
        BarkBackend({"device": "cpu"}).load()

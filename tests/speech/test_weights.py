"""Finding weights: local folders, hub ids, and the error a user sees for each way they can be missing."""
import shutil

import pytest

from tag_speech.mms import MmsTtsBackend, hub_id_for
from tag_speech.speecht5 import SpeechT5Backend
from tag_speech.weights import MODEL_WEIGHTS, WeightsSource
from tagcore.errors import InvalidRequest, WeightsMissing
from tag_testkit.backends import loaded_on_cpu


def test_existing_folder_is_local_and_hub_shaped_names_are_hub_ids(tmp_path):
    assert WeightsSource.locate("m", str(tmp_path), "org/model", ()).local
    assert not WeightsSource.locate("m", "", "org/model", ()).local
    assert WeightsSource.locate("m", "", "org/model", ()).where == "org/model"
    assert WeightsSource.locate("m", "./not/there", "org/model", ()).local
    assert WeightsSource.locate("m", str(tmp_path / "absent"), "org/model", ()).local


def test_missing_folder_names_the_folder_and_the_download_command(tmp_path):
    backend = SpeechT5Backend({"weights": str(tmp_path / "nowhere"), "device": "cpu"})
    with pytest.raises(WeightsMissing) as info:
        backend.load()
    assert str(tmp_path / "nowhere") in info.value.message
    assert "does not exist" in info.value.message
    assert "hf download microsoft/speecht5_tts --local-dir" in info.value.message


def test_missing_file_is_named(tmp_path, speech_models):
    folder = tmp_path / "tts"
    shutil.copytree(speech_models["speecht5"], folder)
    (folder / "spm_char.model").unlink()
    status = SpeechT5Backend.weights_status({"weights": str(folder), "vocoder": str(speech_models["vocoder"])})
    assert not status.present and "spm_char.model" in status.detail
    with pytest.raises(WeightsMissing, match="lacks spm_char.model"):
        SpeechT5Backend({"weights": str(folder), "vocoder": str(speech_models["vocoder"]), "device": "cpu"}).load()


def test_missing_weights_file_lists_the_accepted_names(tmp_path, speech_models):
    folder = tmp_path / "voc"
    shutil.copytree(speech_models["vocoder"], folder)
    (folder / "model.safetensors").unlink()
    backend = SpeechT5Backend({"weights": str(speech_models["speecht5"]), "vocoder": str(folder), "device": "cpu"})
    with pytest.raises(WeightsMissing) as info:
        backend.load()
    assert " or ".join(MODEL_WEIGHTS) in info.value.message
    assert "microsoft/speecht5_hifigan" in info.value.message


def test_corrupt_weights_file_is_weights_missing(tmp_path, speech_models):
    folder = tmp_path / "mms"
    shutil.copytree(speech_models["mms"], folder)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsMissing, match="could not be read"):
        MmsTtsBackend({"weights": str(folder), "device": "cpu"}).load()


def test_hub_id_not_in_cache_offline_says_how_to_download(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    status = MmsTtsBackend.weights_status({"language": "deu"})
    assert not status.present and status.location == "facebook/mms-tts-deu"
    assert "hf download facebook/mms-tts-deu" in status.detail
    with pytest.raises(WeightsMissing, match="hf download facebook/mms-tts-deu"):
        MmsTtsBackend({"language": "deu", "device": "cpu"}).load()


def test_weights_status_reports_present_tiny_models(speech_models):
    status = SpeechT5Backend.weights_status({"weights": str(speech_models["speecht5"]),
                                             "vocoder": str(speech_models["vocoder"]),
                                             "speaker_encoder": str(speech_models["encoder"])})
    assert status.present and "speaker encoder: folder" in status.detail
    assert MmsTtsBackend.weights_status({"weights": str(speech_models["mms"])}).present


@pytest.mark.parametrize("language", ["english", "EN", "de", "e1g", "../x"])
def test_bad_language_codes_are_rejected(language):
    with pytest.raises(InvalidRequest, match="ISO 639-3"):
        MmsTtsBackend({"language": language})


def test_language_selects_the_hub_model():
    assert hub_id_for("swh") == "facebook/mms-tts-swh"
    assert MmsTtsBackend({"language": "fra"}).model_id == "mms_tts:facebook/mms-tts-fra"


def test_malicious_pytorch_weights_never_run(tmp_path, speech_models):
    """A save_pretrained folder may hold pytorch_model.bin (a pickle): transformers must read it weights-only."""
    from tag_testkit import malicious

    folder = tmp_path / "mms"
    shutil.copytree(speech_models["mms"], folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    malicious.torch_checkpoint(folder / "pytorch_model.bin", marker, {})
    with pytest.raises(WeightsMissing, match=str(folder)):
        MmsTtsBackend({"weights": str(folder), "device": "cpu"}).load()
    malicious.assert_not_run(marker)


def test_malicious_voice_file_never_runs(tmp_path, speech_models):
    from tag_testkit import malicious
    from tagcore.errors import ConfigError

    marker = tmp_path / "pwned"
    voice = malicious.numpy_file(tmp_path / "voice.npy", marker)
    backend = SpeechT5Backend({"weights": str(speech_models["speecht5"]), "vocoder": str(speech_models["vocoder"]),
                               "voice": str(voice), "device": "cpu"})
    with pytest.raises(ConfigError, match=f"voice file {voice} is unsafe or corrupt"):
        backend.load()
    malicious.assert_not_run(marker)


def test_malicious_bark_voice_preset_never_runs(tmp_path, bark_folder):
    from tag_speech.bark import BarkBackend
    from tag_testkit import malicious

    folder = tmp_path / "bark"
    shutil.copytree(bark_folder, folder)
    marker = tmp_path / "pwned"
    backend = loaded_on_cpu(BarkBackend, folder)
    preset = backend.presets[0]
    target = folder / str(backend.processor.speaker_embeddings[preset]["semantic_prompt"])
    malicious.numpy_file(target, marker)
    with pytest.raises(WeightsMissing, match=f"{target} is unsafe or corrupt"):
        backend.generate("Hello.", 2.0, seed=1, options={"voice_preset": preset})
    malicious.assert_not_run(marker)

"""Tiny speech models, built once per test session in the Hugging Face on-disk layout."""
from pathlib import Path

import pytest

from tag_testkit import tiny_speech
from tag_testkit.backends import loaded_on_cpu


@pytest.fixture(scope="session")
def speech_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("speech_models")
    model, vocoder = tiny_speech.build_speecht5(root)
    return {"speecht5": model, "vocoder": vocoder, "encoder": tiny_speech.build_speaker_encoder(root),
            "mms": tiny_speech.build_mms(root)}


@pytest.fixture(scope="session")
def speecht5(speech_models):
    from tag_speech.speecht5 import SpeechT5Backend

    backend = SpeechT5Backend({"weights": str(speech_models["speecht5"]), "vocoder": str(speech_models["vocoder"]),
                               "speaker_encoder": str(speech_models["encoder"]), "device": "cpu"})
    backend.ensure_loaded()
    return backend


@pytest.fixture(scope="session")
def mms(speech_models):
    from tag_speech.mms import MmsTtsBackend

    backend = loaded_on_cpu(MmsTtsBackend, speech_models["mms"])
    return backend


@pytest.fixture(scope="session")
def bark_folder(tmp_path_factory) -> Path:
    return tiny_speech.build_bark(tmp_path_factory.mktemp("bark_models"))


@pytest.fixture(scope="session")
def bark(bark_folder):
    from tag_speech.bark import BarkBackend

    backend = loaded_on_cpu(BarkBackend, bark_folder)
    return backend

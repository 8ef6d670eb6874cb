"""Fixtures: tiny random Stable Audio 3 and Stable Audio Open pipelines in the hub layout, and backends on them."""
from __future__ import annotations

from pathlib import Path

import pytest
from tag_testkit.backends import loaded_on_cpu


@pytest.fixture(scope="session")
def sa3_folder(tmp_path_factory) -> Path:
    from tag_testkit.stable_audio_tiny import write_sa3

    return write_sa3(tmp_path_factory.mktemp("sa3") / "tiny-sa3")


@pytest.fixture(scope="session")
def sao_folder(tmp_path_factory) -> Path:
    from tag_testkit.stable_audio_tiny import write_sao

    return write_sao(tmp_path_factory.mktemp("sao") / "tiny-sao")


@pytest.fixture(scope="session")
def sa3(sa3_folder):
    from tag_stable_audio.backend import StableAudio3Backend

    backend = loaded_on_cpu(StableAudio3Backend, sa3_folder)
    return backend


@pytest.fixture(scope="session")
def sao(sao_folder):
    from tag_stable_audio.backend import StableAudioOpenBackend

    backend = loaded_on_cpu(StableAudioOpenBackend, sao_folder)
    return backend


@pytest.fixture(scope="session")
def direct_sa3(sa3_folder):
    """The diffusers pipelines loaded straight from the folder, as a user would call them."""
    import diffusers

    def load(name: str = "StableAudio3Pipeline"):
        pipe = getattr(diffusers, name).from_pretrained(str(sa3_folder))
        pipe.set_progress_bar_config(disable=True)
        return pipe

    return load


@pytest.fixture(scope="session")
def direct_sao(sao_folder):
    from diffusers import StableAudioPipeline

    pipe = StableAudioPipeline.from_pretrained(str(sao_folder))
    pipe.set_progress_bar_config(disable=True)
    return pipe

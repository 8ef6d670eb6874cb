"""Tiny audiocraft models in the exported on-disk format, built once per test session."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("audiocraft")


@pytest.fixture(scope="session")
def tiny_audiogen(tmp_path_factory) -> Path:
    """AudioGen-shaped (16 kHz, 50 Hz, delay pattern, cross-attention) with a 3 s window so extension is cheap."""
    from tag_audiogen.synthetic import ModelShape, export_random_model

    return export_random_model(tmp_path_factory.mktemp("weights") / "tiny-audiogen", ModelShape(segment_duration=3.0))


@pytest.fixture(scope="session")
def tiny_musicgen(tmp_path_factory) -> Path:
    """MusicGen-shaped: 32 kHz EnCodec with hop 640 (50 Hz)."""
    from tag_audiogen.synthetic import ModelShape, export_random_model

    # MusicGen.__init__ sets extend_stride 18, which audiocraft requires to be shorter than the window.
    shape = ModelShape(sample_rate=32000, ratios=(8, 5, 4, 4), segment_duration=20.0)
    return export_random_model(tmp_path_factory.mktemp("weights") / "tiny-musicgen", shape)


@pytest.fixture(scope="session")
def pickled_config_weights(tiny_audiogen, tmp_path_factory) -> Path:
    """The tiny AudioGen re-saved with its config as a pickled DictConfig, like some released checkpoints."""
    import torch
    from omegaconf import OmegaConf

    folder = tmp_path_factory.mktemp("weights") / "pickled-cfg"
    folder.mkdir()
    shutil.copy(tiny_audiogen / "compression_state_dict.bin", folder)
    package = torch.load(tiny_audiogen / "state_dict.bin", weights_only=True)
    package["xp.cfg"] = OmegaConf.create(package["xp.cfg"])
    torch.save(package, folder / "state_dict.bin")
    return folder

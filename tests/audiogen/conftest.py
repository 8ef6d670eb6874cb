"""Tiny audiocraft models in the exported on-disk format, built once per test session."""
from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("audiocraft")

DEFAULT_OPTIONS = {"top_k": 250, "top_p": 0.0, "temperature": 1.0, "cfg_coef": 3.0, "extend_stride": 2.0}
"""audiocraft's own generation defaults, which are also the backends' request-option defaults."""


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Run the tiny models on one intra-op thread, then restore the previous count.

    Why: these models are so small that each op takes microseconds; on a shared 2-core machine torch's thread pool
    spends most of its time waiting for busy cores (measured: 1 s of audio took 2-4 s with 2 threads, 0.4 s with 1).
    The arithmetic, and so every seeded result compared here, is the same in our backend and in the direct call.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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
def t5_hub_cache(tmp_path_factory) -> Path:
    """A Hugging Face hub cache holding a tiny random `t5-small` (encoder + tokenizer) in the hub's own layout."""
    from tag_audiogen.synthetic import write_t5_cache

    cache = tmp_path_factory.mktemp("hf-hub")
    write_t5_cache(cache, "t5-small")
    return cache


@contextlib.contextmanager
def hub_cache(path: Path) -> Iterator[None]:
    """Make huggingface_hub and transformers use `path` as the hub cache, as `HF_HUB_CACHE=path` does at start-up.

    huggingface_hub reads HF_HUB_CACHE once, at import, into `constants.HF_HUB_CACHE`, which transformers consults
    on every lookup: setting the constant is what the variable would have done.
    """
    from huggingface_hub import constants

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "HF_HUB_CACHE", str(path))
        patch.setenv("HF_HUB_CACHE", str(path))
        yield


@pytest.fixture
def t5_cached(t5_hub_cache) -> Iterator[Path]:
    """For one test: the hub cache is `t5_hub_cache`, so `t5-small` resolves offline to the tiny T5."""
    with hub_cache(t5_hub_cache):
        yield t5_hub_cache


@pytest.fixture
def empty_hub_cache(tmp_path) -> Iterator[Path]:
    """For one test: the hub cache is an empty folder, as on an offline machine that never downloaded T5."""
    with hub_cache(tmp_path / "hub"):
        yield tmp_path / "hub"


@pytest.fixture
def hub_cache_without_t5_tokenizer(t5_hub_cache, tmp_path) -> Iterator[Path]:
    """For one test: a hub cache holding the tiny T5's weights but not its tokenizer files."""
    cache = shutil.copytree(t5_hub_cache, tmp_path / "hub")
    for file in cache.rglob("tokenizer*"):
        file.unlink()
    with hub_cache(cache):
        yield cache


@pytest.fixture(scope="session")
def tiny_audiogen_t5(t5_hub_cache, tmp_path_factory) -> Path:
    """The tiny AudioGen with audiocraft's real T5 conditioner (`t5-small`, read from `t5_hub_cache`)."""
    from tag_audiogen.synthetic import ModelShape, export_random_model

    with hub_cache(t5_hub_cache):
        return export_random_model(tmp_path_factory.mktemp("weights") / "tiny-audiogen-t5",
                                   ModelShape(segment_duration=3.0, text_conditioner="t5-small"))


@pytest.fixture(scope="session")
def audiocraft_generate():
    """Generate with audiocraft directly, right after `torch.manual_seed(seed)`: the reference our outputs equal."""
    import torch

    def generate(model, prompt: str, seed: int, duration: float, audio_prompt=None, **options):
        params = {**DEFAULT_OPTIONS, **options}
        model.set_generation_params(use_sampling=True, top_k=params["top_k"], top_p=params["top_p"],
                                    temperature=params["temperature"], duration=duration,
                                    cfg_coef=params["cfg_coef"], extend_stride=params["extend_stride"])
        torch.manual_seed(seed)
        if audio_prompt is None:
            wav = model.generate([prompt])
        else:
            wav = model.generate_continuation(torch.from_numpy(audio_prompt.samples), audio_prompt.sample_rate,
                                              [prompt])
        return wav[0].numpy()

    return generate


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

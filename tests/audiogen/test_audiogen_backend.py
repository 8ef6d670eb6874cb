"""AudioGen/MusicGen backends on tiny random models loaded through the same loader as real weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tagcore import Audio, GenerationItem
from tagcore.errors import InvalidRequest, WeightsMissing
from tag_audiogen.backend import AudioGenBackend, MusicGenBackend
from tag_testkit.backends import loaded_on_cpu

@pytest.fixture(scope="module")
def backend(tiny_audiogen):
    b = loaded_on_cpu(AudioGenBackend, tiny_audiogen)
    return b


@pytest.fixture(scope="module")
def direct(tiny_audiogen):
    """audiocraft itself, loaded from the same folder: the reference our outputs must equal."""
    from audiocraft.models import AudioGen

    return AudioGen.get_pretrained(str(tiny_audiogen), device="cpu")


def test_seeded_output_equals_direct_audiocraft_call(backend, direct, audiocraft_generate):
    result = backend.generate("a dog barks twice", 1.0, seed=1234, options={"top_k": 50, "temperature": 0.9})
    assert result.seed == 1234 and result.model_id == "tiny-audiogen" and result.backend == "audiogen"
    assert result.audio.sample_rate == 16000 and result.audio.frames == 16000
    expected = audiocraft_generate(direct, "a dog barks twice", 1234, 1.0, top_k=50, temperature=0.9)
    np.testing.assert_array_equal(result.audio.samples, expected)
    other = backend.generate("a dog barks twice", 1.0, seed=1235, options={"top_k": 50, "temperature": 0.9})
    assert not np.array_equal(other.audio.samples, result.audio.samples)


def test_missing_seed_is_drawn_and_reported(backend):
    result = backend.generate("wind", 1.0)
    again = backend.generate("wind", 1.0, seed=result.seed)
    np.testing.assert_array_equal(result.audio.samples, again.audio.samples)


def test_batch_items_equal_their_single_runs(backend):
    items = [GenerationItem("rain on a tin roof", 11), GenerationItem("a car horn", 22),
             GenerationItem("rain on a tin roof", 33)]
    progress = []
    results = backend.generate_batch(items, 1.0, options=backend.resolve_request_options({}),
                                     progress=lambda f, stage: progress.append((f, stage)))
    assert [r.seed for r in results] == [11, 22, 33]
    assert results[0].metadata["batch_rows"] == 3
    for item, result in zip(items, results):
        single = backend.generate(item.prompt, 1.0, seed=item.seed)
        np.testing.assert_array_equal(result.audio.samples, single.audio.samples)
    assert not np.array_equal(results[0].audio.samples, results[2].audio.samples)
    assert progress and progress[-1] == (1.0, "generating")
    assert all(a[0] <= b[0] for a, b in zip(progress, progress[1:]))


def test_duration_beyond_the_window_extends_like_audiocraft(backend, direct, audiocraft_generate):
    assert backend.window == 3.0
    result = backend.generate("thunder", 3.5, seed=5)
    assert result.audio.frames == 3.5 * 16000
    np.testing.assert_array_equal(result.audio.samples, audiocraft_generate(direct, "thunder", 5, 3.5))


def test_continuation_from_a_foreign_rate_stereo_prompt(backend, direct, audiocraft_generate):
    t = np.arange(int(0.4 * 44100)) / 44100
    stereo = Audio(np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t)]), 44100)
    result = backend.generate("birds", 1.0, seed=9, audio_prompt=stereo)
    assert result.audio.frames == 16000 and result.audio.channels == 1
    expected = audiocraft_generate(direct, "birds", 9, 1.0, audio_prompt=stereo)
    np.testing.assert_array_equal(result.audio.samples, expected)
    # Items with prompts and without, in one batch: each still equals its single run.
    items = [GenerationItem("birds", 9, audio_prompt=stereo), GenerationItem("birds", 9)]
    batch = backend.generate_batch(items, 1.0, options=backend.resolve_request_options({}))
    np.testing.assert_array_equal(batch[0].audio.samples, result.audio.samples)
    np.testing.assert_array_equal(batch[1].audio.samples, backend.generate("birds", 1.0, seed=9).audio.samples)


def test_prompt_longer_than_duration_is_refused(backend):
    with pytest.raises(InvalidRequest, match="shorter"):
        backend.generate("x", 1.0, seed=1, audio_prompt=Audio(np.zeros(20000, np.float32), 16000))


def test_musicgen_backend_on_a_32khz_model(tiny_musicgen, audiocraft_generate):
    from audiocraft.models import MusicGen

    b = MusicGenBackend({"weights": str(tiny_musicgen), "device": "cpu"})
    result = b.generate("calm piano", 1.0, seed=3)
    assert result.audio.sample_rate == 32000 and result.audio.frames == 32000 and result.backend == "musicgen"
    model = MusicGen.get_pretrained(str(tiny_musicgen), device="cpu")
    np.testing.assert_array_equal(result.audio.samples, audiocraft_generate(model, "calm piano", 3, 1.0))


def test_missing_folder_names_what_to_download(tmp_path):
    b = AudioGenBackend({"weights": str(tmp_path / "nowhere"), "device": "cpu"})
    status = AudioGenBackend.weights_status(b.settings)
    assert not status.present
    with pytest.raises(WeightsMissing, match="does not exist.*facebook/audiogen-medium"):
        b.load()


def test_missing_file_is_named(tmp_path, tiny_audiogen):
    (tmp_path / "state_dict.bin").write_bytes((tiny_audiogen / "state_dict.bin").read_bytes())
    b = AudioGenBackend({"weights": str(tmp_path), "device": "cpu"})
    assert not AudioGenBackend.weights_status(b.settings).present
    with pytest.raises(WeightsMissing, match=r"compression_state_dict.bin is missing"):
        b.load()


def test_pickled_config_needs_explicit_trust(pickled_config_weights, backend):
    settings = {"weights": str(pickled_config_weights), "device": "cpu"}
    assert AudioGenBackend.weights_status(settings).present
    with pytest.raises(WeightsMissing, match="trust_checkpoint=true"):
        AudioGenBackend(settings).load()
    trusted = AudioGenBackend({**settings, "trust_checkpoint": "true"})
    result = trusted.generate("steps", 1.0, seed=4)
    np.testing.assert_array_equal(result.audio.samples, backend.generate("steps", 1.0, seed=4).audio.samples)


def test_hub_id_offline_without_cache_is_weights_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("AUDIOCRAFT_CACHE_DIR", str(tmp_path))
    settings = {"weights": "", "device": "cpu"}
    status = AudioGenBackend.weights_status(AudioGenBackend(settings).settings)
    assert not status.present and status.location == "hub:facebook/audiogen-medium"
    with pytest.raises(WeightsMissing, match="facebook/audiogen-medium"):
        AudioGenBackend(settings).load()


def test_cpu_refuses_half_precision(tiny_audiogen):
    with pytest.raises(InvalidRequest):
        AudioGenBackend({"weights": str(tiny_audiogen), "device": "cpu", "dtype": "bf16"}).load()


def _copy_weights(source, target):
    target.mkdir()
    for name in ("state_dict.bin", "compression_state_dict.bin"):
        (target / name).write_bytes((source / name).read_bytes())
    return target


@pytest.mark.parametrize("trust", ["false", "true"])
@pytest.mark.parametrize("name", ["state_dict.bin", "compression_state_dict.bin"])
def test_malicious_checkpoint_never_runs_even_when_trusted(tmp_path, tiny_audiogen, name, trust):
    from tag_testkit import malicious

    folder = _copy_weights(tiny_audiogen, tmp_path / "w")
    marker = tmp_path / "pwned"
    malicious.torch_checkpoint(folder / name, marker)
    backend = AudioGenBackend({"weights": str(folder), "device": "cpu", "trust_checkpoint": trust})
    with pytest.raises(WeightsMissing, match=f"{folder / name} is unsafe or corrupt") as caught:
        backend.load()
    malicious.assert_not_run(marker)
    assert "trust_checkpoint" not in caught.value.message


@pytest.mark.parametrize("trust", ["false", "true"])
@pytest.mark.parametrize("damage", ["random", "truncated"])
def test_damaged_checkpoint_is_called_corrupt_naming_the_file(tmp_path, tiny_audiogen, damage, trust):
    from tag_testkit import malicious

    folder = _copy_weights(tiny_audiogen, tmp_path / "w")
    path = folder / "state_dict.bin"
    if damage == "random":
        malicious.random_bytes(path)
    else:
        malicious.truncated_copy(tiny_audiogen / "state_dict.bin", path)
    backend = AudioGenBackend({"weights": str(folder), "device": "cpu", "trust_checkpoint": trust})
    with pytest.raises(WeightsMissing, match=f"{path} is (unsafe or )?corrupt") as caught:
        backend.load()
    message = caught.value.message
    assert "trust_checkpoint" not in message and "weights_only" not in message and "hf download" in message


def test_audiocraft_decoder_stays_selectable_and_agrees(backend, tiny_audiogen):
    assert backend.settings["decoder"] == "tag" and backend.static_lm is not None
    theirs = AudioGenBackend({"weights": str(tiny_audiogen), "device": "cpu", "decoder": "audiocraft"})
    theirs.ensure_loaded()
    assert theirs.static_lm is None
    items = [GenerationItem("rain", 3), GenerationItem("wind", 4)]
    options = backend.resolve_request_options({"top_k": 20})
    for ours, reference in zip(backend.generate_batch(items, 0.6, options=options),
                               theirs.generate_batch(items, 0.6, options=options)):
        np.testing.assert_array_equal(ours.audio.samples, reference.audio.samples)


def test_top_k_beyond_the_codebook_is_refused(backend):
    with pytest.raises(InvalidRequest, match="top_k"):
        backend.generate("x", 1.0, seed=1, options={"top_k": 300})


def test_an_architecture_our_loop_lacks_is_refused_with_the_way_out(tmp_path):
    """A model whose text is prepended to the sequence (like MusicGen-melody's chroma) instead of cross-attended."""
    from tag_audiogen.synthetic import ModelShape, export_random_model, lm_config

    fuser = {**lm_config(ModelShape())["fuser"], "prepend": ["description"], "cross": []}
    folder = export_random_model(tmp_path / "prepend", ModelShape(segment_duration=3.0, extra={"fuser": fuser}))
    with pytest.raises(InvalidRequest, match=r"fused by 'prepend'.*-O decoder=audiocraft"):
        AudioGenBackend({"weights": str(folder), "device": "cpu"}).load()
    result = AudioGenBackend({"weights": str(folder), "device": "cpu", "decoder": "audiocraft"}).generate(
        "wind", 0.5, seed=1)
    assert result.audio.frames == 8000

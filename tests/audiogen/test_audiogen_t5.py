"""AudioGen with audiocraft's real T5 text conditioner, through a tiny T5 laid out as an offline hub cache.

The released AudioGen conditions on `t5-large`, which audiocraft loads by name from the Hugging Face cache; these
tests run that exact path (our loader -> audiocraft -> transformers -> hub cache) on a tiny stand-in.
"""
from __future__ import annotations

import numpy as np
import pytest

from tagcore import GenerationItem
from tagcore.errors import WeightsMissing
from tag_audiogen.backend import AudioGenBackend
from tag_testkit.backends import loaded_on_cpu


@pytest.fixture
def t5_backend(tiny_audiogen_t5, t5_cached):
    b = loaded_on_cpu(AudioGenBackend, tiny_audiogen_t5)
    return b


def test_t5_conditioned_output_equals_direct_audiocraft_call(t5_backend, tiny_audiogen_t5, audiocraft_generate):
    from audiocraft.models import AudioGen
    from audiocraft.modules.conditioners import T5Conditioner

    conditioner = t5_backend.model.lm.condition_provider.conditioners["description"]
    assert isinstance(conditioner, T5Conditioner)
    # Our tiny tokenizer, not the special-tokens-only default transformers builds when it finds no tokenizer files.
    assert conditioner.t5_tokenizer.vocab_size == conditioner.t5.config.vocab_size < 100
    result = t5_backend.generate("rain on a tin roof", 1.0, seed=21, options={"top_k": 50})
    assert result.audio.frames == 16000 and result.seed == 21 and result.model_id == "tiny-audiogen-t5"
    direct = AudioGen.get_pretrained(str(tiny_audiogen_t5), device="cpu")
    expected = audiocraft_generate(direct, "rain on a tin roof", 21, 1.0, top_k=50)
    np.testing.assert_array_equal(result.audio.samples, expected)
    # The text reaches the model: another prompt with the same seed gives another clip.
    other = t5_backend.generate("a car horn", 1.0, seed=21, options={"top_k": 50})
    assert not np.array_equal(other.audio.samples, result.audio.samples)


@pytest.mark.parametrize("decoder, rows", [("tag", [3, 3, 3]), ("audiocraft", [1, 2, 2])])
def test_t5_prompts_of_different_token_lengths_batch_like_single_runs(tiny_audiogen_t5, t5_cached, decoder, rows):
    backend = AudioGenBackend({"weights": str(tiny_audiogen_t5), "device": "cpu", "decoder": decoder})
    backend.ensure_loaded()
    items = [GenerationItem("rain on a tin roof", 5), GenerationItem("wind", 6), GenerationItem("dog", 7)]
    results = backend.generate_batch(items, 0.5, options=backend.resolve_request_options({}))
    # "rain on a tin roof" tokenizes longer than the others: our loop masks the shorter texts' padding, audiocraft's
    # loop cannot, so there it runs in a group of its own.
    assert [r.metadata["batch_rows"] for r in results] == rows
    for item, result in zip(items, results):
        single = backend.generate(item.prompt, 0.5, seed=item.seed)
        np.testing.assert_array_equal(result.audio.samples, single.audio.samples)


def test_weights_status_sees_the_cached_t5(tiny_audiogen_t5, t5_cached):
    status = AudioGenBackend.weights_status({"weights": str(tiny_audiogen_t5)})
    assert status.present and status.detail == ""


def test_t5_missing_from_the_cache_names_it_and_how_to_get_it(tiny_audiogen_t5, empty_hub_cache):
    status = AudioGenBackend.weights_status({"weights": str(tiny_audiogen_t5)})
    assert not status.present and "its text encoder t5-small is not in the Hugging Face cache" in status.detail
    backend = AudioGenBackend({"weights": str(tiny_audiogen_t5), "device": "cpu"})
    with pytest.raises(WeightsMissing) as caught:
        backend.load()
    message = str(caught.value)
    assert "text encoder t5-small" in message and str(empty_hub_cache) in message
    assert "hf download t5-small config.json model.safetensors" in message and "models--t5-small" in message



def test_t5_without_its_tokenizer_files_is_refused(tiny_audiogen_t5, hub_cache_without_t5_tokenizer):
    # transformers would quietly build a special-tokens-only tokenizer and the text would be ignored.
    backend = AudioGenBackend({"weights": str(tiny_audiogen_t5), "device": "cpu"})
    with pytest.raises(WeightsMissing, match=r"tokenizer files of the text encoder t5-small are missing.*hf download"):
        backend.load()

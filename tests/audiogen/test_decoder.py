"""Our decode loop (tag_audiogen.decode_loop) against audiocraft's own, on tiny models in the exported format.

Tokens are integers: the two loops agree exactly when every draw lands on the same token, which holds unless a
logit difference of float rounding (~1e-7 here) straddles a sampling boundary; the teacher-forced logits are
compared with a tolerance.
"""
from __future__ import annotations

import pytest
import torch

from tag_audiogen.decode_loop import EagerSteps, generate_tokens, teacher_forced_logits, text_conditioning
from tag_audiogen.decoder import StaticLM, unsupported_features
from tag_audiogen.sampling import SamplingParams


def _attributes(prompts):
    from audiocraft.modules.conditioners import ConditioningAttributes

    return [ConditioningAttributes(text={"description": p}) for p in prompts]


def _params(options: dict) -> SamplingParams:
    return SamplingParams(use_sampling=options.get("use_sampling", True), temperature=options.get("temperature", 1.0),
                          top_k=options.get("top_k", 250), top_p=options.get("top_p", 0.0),
                          cfg_coef=options.get("cfg_coef", 3.0))


def _audiocraft_tokens(model, prompt: str, seed: int, duration: float, prompt_tokens=None, progress=None,
                       **options):
    """audiocraft's own loop for one prompt, right after torch.manual_seed(seed)."""
    p = _params(options)
    model.set_generation_params(use_sampling=p.use_sampling, top_k=p.top_k, top_p=p.top_p, temperature=p.temperature,
                                duration=duration, cfg_coef=p.cfg_coef, extend_stride=options.get("extend_stride", 2))
    torch.manual_seed(seed)
    model.set_custom_progress_callback(progress)
    try:
        return model._generate_tokens(_attributes([prompt]), prompt_tokens, progress is not None)
    finally:
        model.set_custom_progress_callback(None)


def _our_tokens(model, prompts, seeds, duration: float, prompt_tokens=None, progress=None, runner=None, **options):
    """Our loop, eager (default) or through `runner`'s graph steps."""
    p = _params(options)
    model.set_generation_params(use_sampling=p.use_sampling, top_k=p.top_k, top_p=p.top_p, temperature=p.temperature,
                                duration=duration, cfg_coef=p.cfg_coef, extend_stride=options.get("extend_stride", 2))
    if runner is not None:
        steps = runner.steps(p)
    else:
        steps = EagerSteps(StaticLM(model.lm), p, torch.float32, torch.device("cpu"))
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    return generate_tokens(model, steps, _attributes(prompts), prompt_tokens, p, generators, progress)


@pytest.fixture(scope="module")
def audiogen(tiny_audiogen):
    from audiocraft.models import AudioGen

    return AudioGen.get_pretrained(str(tiny_audiogen), device="cpu")


@pytest.mark.parametrize("options", [
    {"use_sampling": False},
    {"temperature": 0.0},
    {"top_k": 1},
    {"top_k": 50, "temperature": 0.8},
    {"top_k": 0},
    {"top_p": 0.9},
    {"top_k": 250, "cfg_coef": 1.0},
], ids=str)
def test_same_tokens_as_audiocraft(audiogen, options):
    expected = _audiocraft_tokens(audiogen, "a dog barks", 17, 1.0, **options)
    ours = _our_tokens(audiogen, ["a dog barks"], [17], 1.0, **options)
    assert ours.shape == expected.shape == (1, 4, 50)
    assert torch.equal(ours, expected)


def test_sampled_tokens_depend_on_the_seed(audiogen):
    assert not torch.equal(_our_tokens(audiogen, ["rain"], [1], 1.0), _our_tokens(audiogen, ["rain"], [2], 1.0))


def test_batch_rows_with_their_own_seeds_equal_single_audiocraft_calls(audiogen):
    prompts, seeds = ["rain on a tin roof", "a car horn", "rain on a tin roof"], [11, 22, 33]
    ours = _our_tokens(audiogen, prompts, seeds, 1.0, top_k=100)
    for row, (prompt, seed) in enumerate(zip(prompts, seeds)):
        assert torch.equal(ours[row:row + 1], _audiocraft_tokens(audiogen, prompt, seed, 1.0, top_k=100))
    assert not torch.equal(ours[0], ours[2])


def test_audio_prompt_is_teacher_forced_like_audiocraft(audiogen):
    prompt_tokens = torch.randint(0, 256, (2, 4, 23), generator=torch.Generator().manual_seed(3))
    ours = _our_tokens(audiogen, ["birds", "wind"], [9, 10], 1.2, prompt_tokens=prompt_tokens)
    assert torch.equal(ours[..., :23], prompt_tokens)
    for row, (prompt, seed) in enumerate([("birds", 9), ("wind", 10)]):
        expected = _audiocraft_tokens(audiogen, prompt, seed, 1.2, prompt_tokens=prompt_tokens[row:row + 1])
        assert torch.equal(ours[row:row + 1], expected)


@pytest.mark.parametrize("duration, prompt_frames", [(4.3, 0), (5.0, 30)])
def test_clips_longer_than_the_window_extend_like_audiocraft(audiogen, duration, prompt_frames):
    assert audiogen.max_duration == 3.0
    prompt_tokens = None
    if prompt_frames:
        prompt_tokens = torch.randint(0, 256, (1, 4, prompt_frames), generator=torch.Generator().manual_seed(4))
    progress, expected_progress = [], []
    ours = _our_tokens(audiogen, ["thunder"], [5], duration, prompt_tokens, lambda *a: progress.append(a),
                       extend_stride=1.5)
    expected = _audiocraft_tokens(audiogen, "thunder", 5, duration, prompt_tokens,
                                  lambda *a: expected_progress.append(a), extend_stride=1.5)
    assert ours.shape == expected.shape == (1, 4, int(duration * 50))
    assert torch.equal(ours, expected)
    # One report per step, with audiocraft's numbers (tokens so far counting earlier windows, window tokens).
    assert progress == expected_progress and len(progress) > int(duration * 50) - prompt_frames


def test_musicgen(tiny_musicgen):
    from audiocraft.models import MusicGen

    model = MusicGen.get_pretrained(str(tiny_musicgen), device="cpu")
    expected = _audiocraft_tokens(model, "calm piano", 3, 1.0, top_k=50)
    assert torch.equal(_our_tokens(model, ["calm piano"], [3], 1.0, top_k=50), expected)


def test_t5_cross_attention_texts_of_different_lengths_in_one_batch(tiny_audiogen_t5, t5_cached):
    from audiocraft.models import AudioGen

    model = AudioGen.get_pretrained(str(tiny_audiogen_t5), device="cpu")
    prompts, seeds = ["rain on a tin roof", "a dog"], [21, 22]
    ours = _our_tokens(model, prompts, seeds, 1.0, top_k=50)
    for row, (prompt, seed) in enumerate(zip(prompts, seeds)):
        assert torch.equal(ours[row:row + 1], _audiocraft_tokens(model, prompt, seed, 1.0, top_k=50))


def test_teacher_forced_logits_match_audiocraft(audiogen):
    codes = torch.randint(0, 256, (1, 4, 40), generator=torch.Generator().manual_seed(8))
    ours, reference = teacher_forced_logits(audiogen, _attributes(["a dog barks"]), codes, 3.0)
    assert ours.shape == reference.shape
    relative = (ours - reference).norm() / reference.norm()
    assert relative < 1e-5, relative


def test_custom_attention_layout_and_layer_scale(tmp_path):
    """Checkpoints trained with audiocraft's custom attention (weights at self_attn.in_proj_weight, no `mha.`)
    and layer scale decode the same way."""
    from audiocraft.models import AudioGen

    from tag_audiogen.synthetic import ModelShape, export_random_model, lm_config

    transformer = {**lm_config(ModelShape())["transformer_lm"], "custom": True, "layer_scale": 0.5}
    folder = export_random_model(tmp_path / "custom", ModelShape(segment_duration=3.0,
                                                                 extra={"transformer_lm": transformer}))
    model = AudioGen.get_pretrained(str(folder), device="cpu")
    assert model.lm.transformer.layers[0].self_attn.custom
    assert torch.equal(_our_tokens(model, ["wind"], [6], 0.6), _audiocraft_tokens(model, "wind", 6, 0.6))


def test_unsupported_architecture_is_named(audiogen, monkeypatch):
    assert unsupported_features(audiogen.lm) == []
    monkeypatch.setitem(audiogen.lm.fuser.fuse2cond, "prepend", ["self_wav"])
    assert unsupported_features(audiogen.lm) == ["conditions fused by 'prepend' (self_wav)"]
    with pytest.raises(ValueError, match="prepend"):
        StaticLM(audiogen.lm)


def _graph_runner(model):
    """The CUDA-graph runner on the CPU: it runs the captured function eagerly, with the same padding, buckets
    and masks."""
    from tag_audiogen.cuda_graphs import GraphRunner
    from tag_audiogen.decode_loop import window_length

    positions = window_length(model.lm, int(model.max_duration * model.frame_rate)) - 1
    return GraphRunner(StaticLM(model.lm), positions, torch.float32, torch.device("cpu"), None)


def test_graph_steps_pad_bucket_and_mask_like_a_single_call(tiny_audiogen_t5, t5_cached):
    """Batch 3 (padded to 4 clips), T5 texts of different lengths padded to the 8-key bucket (the extra keys
    masked), a window crossing the 64- and 128-position buckets, then a request with a prompt reusing the buffers."""
    from audiocraft.models import AudioGen

    model = AudioGen.get_pretrained(str(tiny_audiogen_t5), device="cpu")
    runner = _graph_runner(model)
    prompts, seeds = ["rain on a tin roof", "a dog", "wind"], [1, 2, 3]
    text = text_conditioning(model.lm, _attributes(prompts))
    assert 4 < text.length < 8 and text.mask is not None and not text.mask[1].all()
    ours = _our_tokens(model, prompts, seeds, 3.0, runner=runner, top_k=40)
    assert list(runner.buffers) == [(4, 8)]
    for row, (prompt, seed) in enumerate(zip(prompts, seeds)):
        assert torch.equal(ours[row:row + 1], _audiocraft_tokens(model, prompt, seed, 3.0, top_k=40))
    prompt_tokens = torch.randint(0, 256, (1, 4, 70), generator=torch.Generator().manual_seed(5))
    again = _our_tokens(model, ["dog"], [4], 2.0, prompt_tokens, runner=runner, top_p=0.8)
    assert torch.equal(again, _audiocraft_tokens(model, "dog", 4, 2.0, prompt_tokens, top_p=0.8))


def test_graph_steps_extend_beyond_the_window(audiogen):
    runner = _graph_runner(audiogen)
    ours = _our_tokens(audiogen, ["thunder", "wind"], [5, 6], 4.0, runner=runner)
    assert torch.equal(ours[1:], _audiocraft_tokens(audiogen, "wind", 6, 4.0))
    assert runner.bytes_needed(2, 1) == 0 and runner.bytes_needed(5, 1) > 0
    # Another text bucket of the same batch bucket adds only its cross-attention keys/values.
    from tag_audiogen.cuda_graphs import HEADROOM
    from tag_audiogen.decoder import cache_bytes

    assert runner.bytes_needed(2, 9) == int(HEADROOM * cache_bytes(audiogen.lm, 4, 0, 16, torch.float32)) > 0


def test_a_cache_that_would_not_fit_is_refused_before_allocation(audiogen, monkeypatch):
    from tagcore.errors import InvalidRequest

    runner = _graph_runner(audiogen)
    needed = runner.bytes_needed(3, 1)
    assert needed >= 2 * 4 * len(audiogen.lm.transformer.layers) * 2 * runner.length * audiogen.lm.dim
    monkeypatch.setattr(runner, "capture", True)  # the device check is CUDA's; its arithmetic is checked here
    monkeypatch.setattr(runner, "free_bytes", lambda: needed - 1)
    with pytest.raises(InvalidRequest, match=r"batch of 3 .*GiB of GPU memory"):
        _our_tokens(audiogen, ["a", "b", "c"], [1, 2, 3], 0.5, runner=runner)
    assert runner.buffers == {} and runner.largest_batch(1) == 2
    monkeypatch.setattr(runner, "capture", False)
    assert torch.equal(_our_tokens(audiogen, ["a"], [1], 0.5, runner=runner),
                       _audiocraft_tokens(audiogen, "a", 1, 0.5))

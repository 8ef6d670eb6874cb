"""A clip equals the direct diffusers pipeline call with the same seed and options, alone or in a batch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tagcore import Audio, GenerationItem

TOL = 1e-5


def seeded(seed: int) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


def same(clip: Audio, direct: torch.Tensor) -> None:
    expected = direct[0].float().numpy()
    assert clip.samples.shape == expected.shape
    assert clip.channels == 2 and clip.sample_rate == 44100
    np.testing.assert_allclose(clip.samples, expected, atol=TOL, rtol=0)


def test_sa3_text_equals_the_pipeline(sa3, direct_sa3):
    pipe = direct_sa3()
    got = sa3.generate("a dog barks in the rain", 2.0, seed=11)
    same(got.audio, pipe("a dog barks in the rain", duration=2.0, generator=seeded(11)).audios)
    assert got.metadata["steps"] == 8 and got.metadata["guidance"] == 1.0  # the distilled defaults
    assert np.abs(got.audio.samples[0] - got.audio.samples[1]).max() > 0  # two real channels, not a copy


def test_sa3_guidance_negative_prompt_and_scheduler_are_the_pipelines(sa3, direct_sa3):
    from diffusers import FlowMatchEulerDiscreteScheduler

    pipe = direct_sa3()
    got = sa3.generate("piano melody", 1.5, seed=3, negative_prompt="drums",
                       options={"guidance": 3.0, "steps": 4})
    same(got.audio, pipe("piano melody", duration=1.5, guidance_scale=3.0, negative_prompt="drums",
                         num_inference_steps=4, generator=seeded(3)).audios)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config, stochastic_sampling=False)
    euler = sa3.generate("piano melody", 1.5, seed=3, options={"scheduler": "euler", "steps": 5})
    same(euler.audio, pipe("piano melody", duration=1.5, num_inference_steps=5, generator=seeded(3)).audios)


def test_sa3_batch_gives_each_item_its_own_clip(sa3):
    items = [GenerationItem("a dog barks", 1, candidates=2), GenerationItem("rain on the roof", 7),
             GenerationItem("bird sings", 2, negative_prompt=None)]
    batch = sa3.generate_batch(items, 1.0, options=sa3.resolve_request_options({}))
    assert [len(r.candidates) for r in batch] == [2, 1, 1] and batch[0].metadata["batch_rows"] == 4
    alone = {(p, s): sa3.generate(p, 1.0, seed=s).audio.samples
             for p, s in [("a dog barks", 1), ("a dog barks", 2), ("rain on the roof", 7), ("bird sings", 2)]}
    # candidate k of seed s is the clip seed s + k makes alone
    np.testing.assert_allclose(batch[0].candidates[0].samples, alone[("a dog barks", 1)], atol=TOL, rtol=0)
    np.testing.assert_allclose(batch[0].candidates[1].samples, alone[("a dog barks", 2)], atol=TOL, rtol=0)
    np.testing.assert_allclose(batch[1].audio.samples, alone[("rain on the roof", 7)], atol=TOL, rtol=0)
    np.testing.assert_allclose(batch[2].audio.samples, alone[("bird sings", 2)], atol=TOL, rtol=0)
    assert np.abs(batch[0].candidates[0].samples - batch[0].candidates[1].samples).max() > 1e-3


def _clip(seconds: float, rate: int, channels: int, seed: int = 0) -> Audio:
    rng = np.random.default_rng(seed)
    return Audio((rng.standard_normal((channels, int(seconds * rate))) * 0.2).astype(np.float32), rate)


def test_sa3_variation_is_the_audio_to_audio_pipeline(sa3, direct_sa3):
    pipe = direct_sa3("StableAudio3AudioToAudioPipeline")
    clip = _clip(2.0, 44100, 2)
    options = sa3.resolve_request_options({"audio_role": "variation", "strength": 0.5})
    got = sa3.generate_batch([GenerationItem("rain", 4, audio_prompt=clip)], 2.0, options=options)[0]
    same(got.audio, pipe("rain", duration=2.0, audio=torch.from_numpy(clip.samples)[None], init_noise_level=0.5,
                         generator=seeded(4)).audios)
    stronger = sa3.resolve_request_options({"audio_role": "variation", "strength": 1.0})
    other = sa3.generate_batch([GenerationItem("rain", 4, audio_prompt=clip)], 2.0, options=stronger)[0]
    assert np.abs(other.audio.samples - got.audio.samples).max() > 1e-3  # strength matters


def test_sa3_continuation_is_inpainting_after_the_clip(sa3, direct_sa3):
    pipe = direct_sa3("StableAudio3InpaintPipeline")
    clip = _clip(1.0, 16000, 1, seed=1)  # mono 16 kHz upload: resampled to 44.1 kHz and duplicated to stereo
    got = sa3.generate("thunder", 2.5, seed=8, audio_prompt=clip)
    from tagcore.audio import resample
    reference = torch.from_numpy(np.repeat(resample(clip, 44100).samples, 2, axis=0))[None]
    same(got.audio, pipe("thunder", duration=2.5, audio=reference, mask_start_seconds=1.0, mask_end_seconds=2.5,
                         generator=seeded(8)).audios)
    assert got.metadata["audio_role"] == "continuation" and got.metadata["kept_s"] == 1.0


def test_sa3_audio_prompts_of_different_lengths_batch_like_alone(sa3):
    short, longer = _clip(0.5, 44100, 2, seed=2), _clip(1.0, 44100, 2, seed=3)
    items = [GenerationItem("wind", 1, audio_prompt=short), GenerationItem("water", 2, audio_prompt=longer),
             GenerationItem("engine", 3)]
    options = sa3.resolve_request_options({})
    batch = sa3.generate_batch(items, 1.5, options=options)
    for item, result in zip(items, batch):
        alone = sa3.generate_batch([item], 1.5, options=options)[0]
        np.testing.assert_allclose(result.audio.samples, alone.audio.samples, atol=TOL, rtol=0)


def test_sao_equals_the_pipeline_and_batches_like_alone(sao, direct_sao):
    got = sao.generate("a dog barks", 2.0, seed=5, negative_prompt="rain", options={"steps": 6})
    same(got.audio, direct_sao("a dog barks", audio_end_in_s=2.0, num_inference_steps=6, negative_prompt="rain",
                               generator=seeded(5)).audios)
    assert (got.metadata["guidance"], got.metadata["scheduler"]) == (7.0, "shipped")
    items = [GenerationItem("a dog barks", 5, negative_prompt="rain"), GenerationItem("piano", 6),
             GenerationItem("wind", 7, candidates=2)]
    options = sao.resolve_request_options({"steps": 6})
    batch = sao.generate_batch(items, 2.0, options=options)
    np.testing.assert_allclose(batch[0].audio.samples, got.audio.samples, atol=TOL, rtol=0)
    for item, result in zip(items[1:], batch[1:]):
        alone = sao.generate(item.prompt, 2.0, seed=item.seed, options={"steps": 6})
        np.testing.assert_allclose(result.audio.samples, alone.audio.samples, atol=TOL, rtol=0)
    second = sao.generate("wind", 2.0, seed=8, options={"steps": 6})
    np.testing.assert_allclose(batch[2].candidates[1].samples, second.audio.samples, atol=TOL, rtol=0)


def test_sao_deterministic_scheduler_is_the_edm_solver(sao, direct_sao):
    from diffusers import EDMDPMSolverMultistepScheduler, StableAudioPipeline

    pipe = StableAudioPipeline(**{**direct_sao.components, "scheduler": EDMDPMSolverMultistepScheduler.from_config(
        direct_sao.scheduler.config, algorithm_type="dpmsolver++")})
    pipe.set_progress_bar_config(disable=True)
    got = sao.generate("bird sings", 1.0, seed=2, options={"steps": 5, "scheduler": "dpmsolver++"})
    same(got.audio, pipe("bird sings", audio_end_in_s=1.0, num_inference_steps=5, generator=seeded(2)).audios)


@pytest.mark.parametrize("seconds", [1.3, 2.0])
def test_clip_length_is_tags_rounding(sa3, seconds):
    assert sa3.generate("rain", seconds, seed=1).audio.frames == round(seconds * 44100)

"""A song equals the direct AceStepPipeline call with the same seed and inputs, alone or in a batch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tagcore import Audio, GenerationItem

TOL = 1e-5
LYRICS = "[verse]\nour cat sleeps in the sun\n[chorus]\noh little cat"


def seeded(seed: int) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


def same(clip: Audio, direct: torch.Tensor, seconds: float) -> None:
    expected = direct[0, :, :round(seconds * 48000)].float().numpy()
    assert (clip.sample_rate, clip.channels) == (48000, 2)
    assert clip.samples.shape == expected.shape
    np.testing.assert_allclose(clip.samples, expected, atol=TOL, rtol=0)


def test_song_with_lyrics_equals_the_pipeline(ace, direct):
    got = ace.generate("cheerful folk song about our cat", 10.0, seed=11, options={"lyrics": LYRICS})
    same(got.audio, direct("cheerful folk song about our cat", lyrics=LYRICS, audio_duration=10.0,
                           generator=seeded(11)).audios, 10.0)
    assert (got.metadata["steps"], got.metadata["guidance"], got.metadata["shift"]) == (8, 1.0, 3.0)  # turbo
    assert got.metadata["instrumental"] is False
    assert np.abs(got.audio.samples[0] - got.audio.samples[1]).max() > 0  # two real channels, not a copy
    instrumental = ace.generate("cheerful folk song about our cat", 10.0, seed=11)
    same(instrumental.audio, direct("cheerful folk song about our cat", audio_duration=10.0,
                                    generator=seeded(11)).audios, 10.0)
    assert np.abs(instrumental.audio.samples - got.audio.samples).max() > 1e-4  # the lyrics matter


def test_options_are_the_pipelines(ace, direct):
    got = ace.generate("slow jazz", 10.5, seed=3, options={"steps": 4, "shift": 1.0, "language": "fr",
                                                            "lyrics": "[verse]\nla nuit"})
    same(got.audio, direct("slow jazz", lyrics="[verse]\nla nuit", vocal_language="fr", audio_duration=10.5,
                           num_inference_steps=4, shift=1.0, generator=seeded(3)).audios, 10.5)


def test_guidance_on_a_base_checkpoint(base_folder):
    from diffusers import AceStepPipeline
    from tag_ace_step.backend import AceStepBackend
    from tag_testkit.backends import loaded_on_cpu

    base = loaded_on_cpu(AceStepBackend, base_folder)
    pipe = AceStepPipeline.from_pretrained(str(base_folder))
    pipe.set_progress_bar_config(disable=True)
    got = base.generate("rock ballad", 10.0, seed=5, options={"guidance": 3.0, "steps": 4})
    same(got.audio, pipe("rock ballad", audio_duration=10.0, guidance_scale=3.0, num_inference_steps=4,
                         generator=seeded(5)).audios, 10.0)
    assert got.metadata["guidance"] == 3.0
    plain = base.generate("rock ballad", 10.0, seed=5, options={"guidance": 1.0, "steps": 4})
    assert np.abs(plain.audio.samples - got.audio.samples).max() > 1e-4  # guidance runs on base checkpoints


def test_batch_gives_each_item_its_own_song(ace):
    items = [GenerationItem("folk song", 1, candidates=2), GenerationItem("folk tune", 7),
             GenerationItem("a long ballad about the sea", 2)]
    options = ace.resolve_request_options({"lyrics": LYRICS})
    batch = ace.generate_batch(items, 10.0, options=options)
    assert [len(r.candidates) for r in batch] == [2, 1, 1]
    # "folk song" and "folk tune" encode to as many tokens: one call of 3 rows; the ballad is longer: its own
    assert [r.metadata["batch_rows"] for r in batch] == [3, 3, 1]
    for (prompt, seed), clip in zip([("folk song", 1), ("folk song", 2), ("folk tune", 7),
                                     ("a long ballad about the sea", 2)],
                                    batch[0].candidates + [batch[1].audio, batch[2].audio]):
        alone = ace.generate(prompt, 10.0, seed=seed, options={"lyrics": LYRICS}).audio
        np.testing.assert_allclose(clip.samples, alone.samples, atol=TOL, rtol=0)  # candidate k: seed s + k
    assert np.abs(batch[0].candidates[0].samples - batch[0].candidates[1].samples).max() > 1e-4


def _clip(seconds: float, rate: int, channels: int, seed: int = 0) -> Audio:
    rng = np.random.default_rng(seed)
    return Audio((rng.standard_normal((channels, int(seconds * rate))) * 0.2).astype(np.float32), rate)


def test_continuation_is_the_repaint_task(ace, direct):
    clip = _clip(4.0, 16000, 1, seed=1)  # mono 16 kHz upload: resampled to 48 kHz and duplicated to stereo
    got = ace.generate("folk song", 10.0, seed=8, audio_prompt=clip)
    from tagcore.audio import resample
    source = np.zeros((2, 480000), np.float32)
    source[:, :192000] = np.repeat(resample(clip, 48000).samples, 2, axis=0)
    torch.manual_seed(8)  # the VAE's posterior sample of the clip
    same(got.audio, direct("folk song", audio_duration=10.0, task_type="repaint", src_audio=torch.from_numpy(source),
                           repainting_start=4.0, repainting_end=10.0, generator=seeded(8)).audios, 10.0)
    assert got.metadata["audio_role"] == "continuation" and got.metadata["kept_s"] == 4.0


def test_variation_is_the_cover_task_and_batches_like_alone(ace, direct):
    clip = _clip(6.0, 48000, 2, seed=2)
    options = ace.resolve_request_options({"audio_role": "variation", "strength": 0.5})
    items = [GenerationItem("pop", 4, candidates=2, audio_prompt=clip), GenerationItem("pop", 9)]
    batch = ace.generate_batch(items, 10.0, options=options)
    looped = torch.from_numpy(np.tile(clip.samples, (1, 2))[:, :480000])
    for k in range(2):
        torch.manual_seed(4 + k)
        same(batch[0].candidates[k], direct("pop", audio_duration=10.0, task_type="cover", src_audio=looped,
                                            audio_cover_strength=0.5, generator=seeded(4 + k)).audios, 10.0)
    np.testing.assert_allclose(batch[1].audio.samples, ace.generate("pop", 10.0, seed=9).audio.samples,
                               atol=TOL, rtol=0)
    assert batch[0].metadata["audio_role"] == "variation" and batch[0].metadata["batch_rows"] == 1


@pytest.mark.parametrize("seconds", [10.01, 12.345])
def test_song_length_is_tags_rounding(ace, seconds):
    assert ace.generate("rain song", seconds, seed=1).audio.frames == round(seconds * 48000)

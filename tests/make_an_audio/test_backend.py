"""The make_an_audio backend on a tiny model in the official layout: seeds, batching, candidates, options."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from tagcore import GenerationItem, plugins
from tagcore.errors import InvalidRequest


def run(backend, items, duration=1.0, **options):
    resolved = backend.resolve_request_options({"steps": 3, **options})
    return backend.generate_batch(items, duration, options=resolved)


def test_registered_through_the_entry_point():
    from tag_make_an_audio.backend import MakeAnAudioBackend

    assert plugins.backends().get("make_an_audio") is MakeAnAudioBackend
    caps = MakeAnAudioBackend.capabilities
    assert caps.batch and caps.candidates and caps.seed
    assert MakeAnAudioBackend.sample_rate == 16000 and MakeAnAudioBackend.max_duration >= 30


@pytest.mark.parametrize("duration", [1.0, 2.5])
def test_clip_length_and_report(tiny_backend, duration):
    result = run(tiny_backend, [GenerationItem("a bird chirps", seed=3)], duration)[0]
    assert result.audio.frames == round(duration * 16000) and result.audio.sample_rate == 16000
    assert np.isfinite(result.audio.samples).all() and np.abs(result.audio.samples).max() <= 1.0
    assert result.seed == 3 and result.model_id == "make_an_audio:maa1_full"
    assert set(result.timings) >= {"text_s", "diffusion_s", "vae_s", "vocoder_s"}


def test_latent_width_rule():
    from tag_make_an_audio.model import latent_width

    assert [latent_width(d) for d in (1, 2, 5, 10, 30)] == [8, 16, 40, 80, 236]
    for tenths in range(10, 301):  # every clip covers the requested duration
        assert latent_width(tenths / 10) * 2048 >= round(tenths / 10 * 16000)
    assert latent_width(20) == 160  # official width 156 would be 32 ms short


def test_same_seed_same_clip_and_different_seed_differs(tiny_backend):
    a = run(tiny_backend, [GenerationItem("rain on the roof", seed=7)])[0].audio.samples
    b = run(tiny_backend, [GenerationItem("rain on the roof", seed=7)])[0].audio.samples
    c = run(tiny_backend, [GenerationItem("rain on the roof", seed=8)])[0].audio.samples
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_start_noise_follows_the_official_seed_rule(tiny_backend, monkeypatch):
    seen = []
    original = tiny_backend.model.sample
    monkeypatch.setattr(tiny_backend.model, "sample", lambda noise, *a, **k: (seen.append(noise), original(noise, *a, **k))[1])
    run(tiny_backend, [GenerationItem("dog barks", seed=11, candidates=3)])
    torch.manual_seed(11)
    assert torch.equal(seen[0], torch.randn(3, 4, 10, 8))


def test_batch_equals_items_generated_alone(tiny_backend):
    items = [GenerationItem("a bird chirps", seed=1), GenerationItem("dog barks", seed=2, candidates=2)]
    together = run(tiny_backend, items)
    alone = [run(tiny_backend, [item])[0] for item in items]
    assert [len(r.candidates) for r in together] == [1, 2]
    for joint, single in zip(together, alone):
        assert joint.seed == single.seed
        for x, y in zip(joint.candidates, single.candidates):  # batch-size kernels reorder sums: float noise only
            np.testing.assert_allclose(x.samples, y.samples, atol=5e-3)
    assert together[0].metadata["batch_size"] == 3


def test_candidates_are_distinct_clips(tiny_backend):
    result = run(tiny_backend, [GenerationItem("engine", seed=5, candidates=3)])[0]
    assert len(result.candidates) == 3
    assert not np.allclose(result.candidates[0].samples, result.candidates[1].samples)


def test_dpmpp_sampler_and_no_guidance(tiny_backend):
    item = [GenerationItem("rain", seed=4)]
    ddim = run(tiny_backend, item, sampler="ddim")[0].audio.samples
    dpm = run(tiny_backend, item, sampler="dpmpp")[0].audio.samples
    plain = run(tiny_backend, item, guidance=1.0)[0].audio.samples
    assert np.isfinite(dpm).all() and not np.allclose(ddim, dpm)
    assert not np.allclose(ddim, plain)


def test_progress_reports_every_step_then_decoding(tiny_backend):
    calls = []
    tiny_backend.generate_batch([GenerationItem("rain", seed=1)], 1.0,
                                options=tiny_backend.resolve_request_options({"steps": 4}),
                                progress=lambda f, s: calls.append((round(f, 3), s)))
    assert [s for _, s in calls[:4]] == ["generating"] * 4
    assert [f for f, _ in calls] == sorted(f for f, _ in calls)
    assert ("decoding" in [s for _, s in calls]) and calls[-1][0] == 1.0


def test_option_validation(tiny_backend):
    with pytest.raises(InvalidRequest):
        tiny_backend.resolve_request_options({"sampler": "euler"})
    with pytest.raises(InvalidRequest):
        tiny_backend.resolve_request_options({"steps": 0})
    with pytest.raises(InvalidRequest):
        tiny_backend.resolve_request_options({"weights": "/elsewhere"})  # worker option, not per request


def test_ddim_step_lists_match_the_official_rule():
    from tag_make_an_audio.sampler import ddim_tables

    ac = torch.linspace(0.999, 0.01, 1000)
    assert ddim_tables(ac, 100).timesteps == list(range(1, 1000, 10))
    assert len(ddim_tables(ac, 30).timesteps) == 31  # 1000 // 30 = 33 -> 31 steps, as in the official code
    assert ddim_tables(ac, 3).timesteps == [1, 334, 667]  # t=1000 (an official crash) is dropped
    assert ddim_tables(ac, 5).alphas_prev[0] == ac[0]


def test_bf16_on_cpu_runs(tiny_weights):
    from tag_make_an_audio.backend import MakeAnAudioBackend

    backend = MakeAnAudioBackend({"weights": str(tiny_weights), "device": "cpu", "dtype": "bf16"})
    result = backend.generate("a bird chirps", 1.0, seed=1, options={"steps": 2})
    assert backend.model.unet.dtype == torch.bfloat16 and next(backend.model.vocoder.parameters()).dtype == torch.float32
    assert np.isfinite(result.audio.samples).all() and result.metadata["dtype"] == "bfloat16"


def test_generator_advances_once_per_step_like_the_official_sampler(tiny_backend):
    model = tiny_backend.model
    noise = torch.zeros(model.latent_shape(1, 8))
    c = model.encode_text(["rain"])
    torch.manual_seed(5)
    model.sample(noise, c, c, steps=4, guidance=1.0)
    after = torch.rand(3)
    torch.manual_seed(5)
    for _ in range(4):
        torch.randn(noise.shape)
    assert torch.equal(after, torch.rand(3))


def test_block_scope_compiles_each_repeated_block_and_nothing_else(tiny_weights):
    """compile_scope=blocks wraps every ResNet block and spatial transformer (and only those) in torch.compile, and
    raises torch's recompile limit past what the distinct block shapes need, so no block silently stays eager."""
    from tag_make_an_audio import model as maa
    from tag_make_an_audio.compiled import BLOCK_TYPES, RECOMPILE_LIMIT, compile_unet

    def compiled_kinds(unet: torch.nn.Module) -> set[str]:
        return {type(m).__name__ for m in unet.modules() if getattr(m, "_compiled_call_impl", None) is not None}

    unet = maa.load(tiny_weights, torch.device("cpu"), torch.float32).unet
    assert not compiled_kinds(unet)
    with torch._dynamo.config.patch(recompile_limit=8):  # torch's default; restored after the block
        assert compile_unet(unet, "blocks") is unet
        assert torch._dynamo.config.recompile_limit == RECOMPILE_LIMIT
    assert compiled_kinds(unet) == set(BLOCK_TYPES)
    assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="not one of unet, blocks"):
        compile_unet(unet, "everything")


@pytest.mark.slow
@pytest.mark.skipif(not any(shutil.which(cc) for cc in ("c++", "g++", "clang++")),
                    reason="torch.compile on the CPU needs a C++ compiler")
@pytest.mark.parametrize("scope", ["unet", "blocks"])
def test_compiled_unet_computes_the_same_clip(scope, tiny_backend, tiny_weights, tmp_path, monkeypatch):
    """`compile` (channels-last UNet under torch.compile; about a minute of compilation here per scope) changes no
    result at two clip shapes, with no part left eager by torch's recompile limit, and torch's compile caches go
    under TAG's cache folder (out of /tmp) for restarted workers to reuse."""
    from tag_make_an_audio.backend import MakeAnAudioBackend

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)  # restored after the test, as it was
    with torch._dynamo.config.patch(recompile_limit=torch._dynamo.config.recompile_limit):  # restored after
        compiled = MakeAnAudioBackend({"weights": str(tiny_weights), "device": "cpu", "dtype": "fp32",
                                       "compile": True, "compile_scope": scope})
        compiled.ensure_loaded()
        assert compiled.model.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
        options = {"preset": "fast", "steps": 3, "guidance": 3.0, "sampler": "auto"}
        for duration, items in ((1.0, [GenerationItem(prompt="rain", seed=1)]),
                                (2.0, [GenerationItem(prompt="rain", seed=1), GenerationItem(prompt="dog", seed=2)])):
            with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
                got = compiled.generate_batch(items, duration, options=options)
            want = tiny_backend.generate_batch(items, duration, options=options)
            for mine, theirs in zip(got, want):
                a, b = mine.candidates[0].samples, theirs.candidates[0].samples
                assert np.linalg.norm(a - b) <= 1e-4 * np.linalg.norm(b)
    assert any((tmp_path / "tag" / "torchinductor").rglob("*.py"))  # the generated kernels, cached there

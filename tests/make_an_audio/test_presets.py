"""Presets (quality / fast), the warmup option, and the CUDA-graph sampler (runs where CUDA is present)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tag_make_an_audio.backend import MakeAnAudioBackend, parse_warmup, sampling
from tag_make_an_audio.graphs import StageGraphs
from tagcore import GenerationItem
from tagcore.errors import InvalidRequest


def resolved(**given):
    return MakeAnAudioBackend.resolve_request_options(given)


def test_presets_pick_sampler_and_steps_and_explicit_values_win():
    assert sampling(resolved()) == ("ddim", 100)  # quality is the default: the official settings
    assert sampling(resolved(preset="fast")) == ("dpmpp", 25)
    assert sampling(resolved(preset="fast", steps=40)) == ("dpmpp", 40)
    assert sampling(resolved(preset="fast", sampler="ddim")) == ("ddim", 25)
    assert sampling(resolved(sampler="dpmpp", steps=10)) == ("dpmpp", 10)
    with pytest.raises(InvalidRequest):
        resolved(preset="turbo")


def test_result_metadata_names_the_preset_and_what_ran(tiny_backend, cpu_activation_path):
    options = tiny_backend.resolve_request_options({"preset": "fast", "steps": 2})
    result = tiny_backend.generate_batch([GenerationItem("rain", seed=1)], 1.0, options=options)[0]
    assert {k: result.metadata[k] for k in ("preset", "sampler", "steps", "cuda_graphs")} == {
        "preset": "fast", "sampler": "dpmpp", "steps": 2, "cuda_graphs": False}
    assert result.metadata["vocoder_activations"] == cpu_activation_path


def test_preset_is_a_request_option_the_frontends_list():
    """The web page and the bot's [telegram.options] take request options generically: preset is one."""
    spec = {o.name: o for o in MakeAnAudioBackend.options}["preset"]
    assert spec.scope == "request" and spec.choices == ("quality", "fast") and spec.default == "quality"


def test_warmup_option_parses_shapes_and_refuses_bad_ones():
    assert parse_warmup("") == []
    assert parse_warmup("10:1, 10:8,5") == [(10.0, 1), (10.0, 8), (5.0, 1)]
    for bad in ("ten", "10:x", "10:0", "99:1"):
        with pytest.raises(InvalidRequest):
            parse_warmup(bad)
    with pytest.raises(InvalidRequest):
        MakeAnAudioBackend({"warmup": "10:zero"})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_cuda_graph_replay_equals_the_eager_loop(tiny_weights, monkeypatch):
    # TF32 (on by default for cuDNN convolutions) rounds to 1e-3, and eager and captured runs may pick different
    # algorithms: over 23 steps of a random UNet that grew to 4e-2 on an H100. Compare true fp32 arithmetic.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    backend = MakeAnAudioBackend({"weights": str(tiny_weights), "device": "cuda", "dtype": "fp32",
                                  "warmup": "1:2"})
    backend.ensure_loaded()
    graphs = backend.graphs
    assert len(graphs.entries) == 2  # both presets at batch bucket 2, captured at load
    model = backend.model
    c = model.encode_text(["rain", "dog barks", "engine"])
    uc = model.encode_text([""]).expand_as(c)
    noise = torch.randn(model.latent_shape(3, 8), generator=torch.Generator().manual_seed(0))
    for sampler, steps in (("ddim", 23), ("dpmpp", 7)):
        calls = []
        torch.manual_seed(0)
        eager = model.sample(noise, c, uc, steps=steps, guidance=3.0, sampler=sampler)
        after_eager = torch.rand(2)
        torch.manual_seed(0)
        z, capture_s = graphs.sample(noise, c, uc, steps=steps, guidance=3.0, sampler=sampler,
                                     hook=lambda i, n, x, x0: calls.append(i))
        assert capture_s > 0 and torch.equal(torch.rand(2), after_eager)
        torch.testing.assert_close(z, eager, rtol=1e-4, atol=1e-4)
        n = model.plan(sampler, steps).steps  # the official DDIM discretisation makes 24 steps of "23"
        assert calls == [i for i in range(9, n, 10)] + ([n - 1] if n % 10 else [])
        again, capture_again = graphs.sample(noise, c, uc, steps=steps, guidance=2.0, sampler=sampler)
        assert capture_again == 0.0  # captured once per shape; any guidance > 1 shares it


def test_stage_whose_capture_fails_runs_eagerly_and_is_not_captured_again(caplog):
    """Here the capture fails for want of a GPU; on a GPU, an operation that cannot be captured does the same."""
    calls = []
    stage = StageGraphs("the doubler", lambda x: calls.append(x.shape) or 2 * x, torch.device("cpu"), (0, 0))
    x = torch.arange(6.0).reshape(3, 2)
    torch.testing.assert_close(stage(x), 2 * x)
    torch.testing.assert_close(stage(x + 1), 2 * (x + 1))
    assert "the doubler runs eagerly for (4, 2)" in caplog.text  # 3 rows share the 4-row bucket's graph
    assert caplog.text.count("runs eagerly") == 1
    assert calls == [(3, 2), (3, 2)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_graph_replayed_stages_equal_eager_ones_at_a_padded_batch(tiny_weights, monkeypatch):
    """Text encoder, VAE and vocoder replayed from their graphs (3 rows in the 4-row bucket) = the eager stages on
    the same inputs. (Sampling is compared on the latents above: through a random tiny VAE and vocoder, rounding
    differences of the latents grow, so whole clips are not the place to compare.)"""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    backend = MakeAnAudioBackend({"weights": str(tiny_weights), "device": "cuda", "dtype": "fp32", "warmup": "1:3"})
    backend.ensure_loaded()
    model, graphs = backend.model, backend.graphs
    captured = {name: dict(stage.entries) for name, stage in
                (("text", graphs.text), ("vae", graphs.vae), ("vocoder", graphs.vocoder))}
    assert all(entries and None not in entries.values() for entries in captured.values()), captured
    ids = model.tokenize(["rain", "a dog barks", ""]).to(model.device)
    z = torch.randn(model.latent_shape(3, 8), generator=torch.Generator().manual_seed(0)).to(model.device)
    with torch.inference_mode():
        text, mel = model.text_encoder(ids), model.decode(z)
        wav = model.vocode(mel)
    torch.testing.assert_close(graphs.text(ids), text, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(graphs.vae(z), mel, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(graphs.vocoder(mel), wav, rtol=1e-5, atol=1e-5)
    assert {name: dict(stage.entries) for name, stage in
            (("text", graphs.text), ("vae", graphs.vae), ("vocoder", graphs.vocoder))} == captured  # nothing new
    result = backend.generate_batch([GenerationItem(prompt="rain", seed=1)] * 3, 1.0,
                                    options={"preset": "fast", "steps": 5, "guidance": 3.0, "sampler": "auto"})
    assert result[0].metadata["vocoder_activations"] == "polyphase-triton"
    assert all(np.isfinite(r.candidates[0].samples).all() and r.candidates[0].samples.std() > 0 for r in result)


def test_warm_up_has_nothing_to_capture_without_cuda_graphs(tiny_backend):
    """`tag worker --warmup` on a CPU worker: the call returns at once (the graphs are a CUDA matter)."""
    assert tiny_backend.graphs is None
    assert tiny_backend.warm_up([(10.0, 1), (10.0, 8)]) == 0.0


class _Replayed(StageGraphs):
    """StageGraphs whose "graph" recomputes the stage on the static input at replay: the bucketing, padding and
    static-buffer logic run here as on a GPU, without one."""

    def _record(self, static_in):
        out = self.fn(static_in)
        stage = self

        class Replay:
            def replay(self):
                out.copy_(stage.fn(static_in))

        return Replay(), out


def test_stage_graphs_pad_to_the_bucket_and_capture_each_bucket_once():
    seen = []

    def stage_fn(x):
        seen.append(x.clone())
        return x.sum(dim=1, keepdim=True) * torch.arange(1.0, x.shape[0] + 1)[:, None]  # depends on the row

    stage = _Replayed("the summer", stage_fn, torch.device("cpu"), (0, 0))
    gen = torch.Generator().manual_seed(0)
    x3, x4, x2 = (torch.randn(n, 5, generator=gen) for n in (3, 4, 2))
    want = stage_fn(x3)
    torch.testing.assert_close(stage(x3), want)  # rows 1..3 of the 4-row bucket
    assert seen[-1].shape[0] == 4 and torch.equal(seen[-1][3], x3[0])  # the pad row repeats the first
    want = stage_fn(x4)
    torch.testing.assert_close(stage(x4), want)  # the same bucket: no new capture
    want = stage_fn(x2)
    torch.testing.assert_close(stage(x2), want)  # bucket 2: captured now
    assert sorted(key[0] for key in stage.entries) == [2, 4]
    assert stage(x3.double()).dtype == torch.float64 and len(stage.entries) == 3  # another dtype, another graph

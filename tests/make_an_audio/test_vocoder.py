"""BigVGAN's activations: the polyphase form equals bigvgan's modules; the CUDA-kernel choice falls back cleanly."""
from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import torch
from bigvgan.activations import Snake, SnakeBeta
from bigvgan.alias_free_activation.torch.act import Activation1d

from tag_make_an_audio import snake_kernel
from tag_make_an_audio import vocoder as voc
from tag_make_an_audio.snake_kernel import FusedSnake
from tag_make_an_audio.spectral_conv import SpectralConv1d
from tag_testkit.bigvgan_tiny import snake_activation, tiny_bigvgan


@pytest.mark.parametrize("kind,logscale", [(SnakeBeta, True), (SnakeBeta, False), (Snake, True), (Snake, False)])
@pytest.mark.parametrize("shape", [(1, 6, 1), (2, 3, 2), (3, 5, 17), (1, 8, 300)])
def test_polyphase_equals_bigvgan_activation(kind, logscale, shape):
    module = snake_activation(kind, shape[1], logscale, seed=sum(shape))
    x = 3 * torch.randn(shape, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want, got = module(x), voc.PolyphaseSnake.from_bigvgan(module)(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_whole_vocoder_with_polyphase_activations_is_unchanged(pytorch_polyphase):
    original = tiny_bigvgan()
    fast = copy.deepcopy(original)
    assert voc.accelerate(fast, torch.device("cpu")) == voc.PATH_POLYPHASE
    assert not any(isinstance(m, Activation1d) for m in fast.modules())
    mel = torch.randn(2, original.h.num_mels, 12, generator=torch.Generator().manual_seed(3)) - 3
    with torch.inference_mode():
        torch.testing.assert_close(fast(mel), original(mel), rtol=1e-4, atol=1e-5)


def test_whole_vocoder_with_spectral_convolutions_matches_bigvgan(monkeypatch, pytorch_polyphase):
    """Every kernel-7/11 residual convolution (channels 32 down to 1 here) in spectral form, plus polyphase snakes."""
    monkeypatch.setattr(voc, "SPECTRAL_MIN_CHANNELS", 1)
    original = tiny_bigvgan(kernels=(3, 7, 11))
    fast = copy.deepcopy(original)
    assert voc.accelerate(fast, torch.device("cpu")) == voc.PATH_POLYPHASE
    spectral = [m for m in fast.modules() if isinstance(m, SpectralConv1d)]
    assert len(spectral) == 6 * 2 * 3 * 2  # 6 stages x kernels 7 and 11 x 3 dilations x (convs1, convs2)
    for frames in (12, 5, 12):  # a new length re-lays out the mixing weights; going back must too
        mel = torch.randn(2, original.h.num_mels, frames, generator=torch.Generator().manual_seed(frames)) - 3
        with torch.inference_mode():
            want = original(mel)
            torch.testing.assert_close(fast(mel), want, rtol=0, atol=2e-5 * want.abs().max().item())


def test_spectral_convolutions_are_only_used_where_they_pay():
    model = tiny_bigvgan(kernels=(3, 7, 11))  # 64 channels in, so 32 in the first stage: all below the threshold
    assert voc.use_spectral_convs(model) == 0
    assert not any(isinstance(m, SpectralConv1d) for m in model.modules())
    with torch.device("meta"):
        def block(channels, taps):
            return voc.spectral_block(torch.nn.Conv1d(channels, channels, taps, padding=taps // 2))

        # kernel 3 and 96 channels stay direct; 768 channels would need 111 MB of spectra per conv at n = 32
        assert [block(768, 3), block(96, 11), block(768, 11), block(768, 7), block(384, 11), block(192, 7)] == \
            [None, None, 16, 16, 32, 32]


class PolyphaseKernel:
    """Stands in for the compiled kernel: the same call, computed by the proven polyphase path."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset, self.calls = offset, 0

    def forward(self, x, up_filter, down_filter, log_alpha, log_beta):
        self.calls += 1
        snake = voc.PolyphaseSnake(up_filter, down_filter, log_alpha.exp(), 1.0 / (log_beta.exp() + voc.SNAKE_EPS))
        return snake(x) + self.offset


def test_cuda_kernel_that_does_not_build_leaves_the_pytorch_path(caplog):
    def no_compiler(device):
        raise RuntimeError("nvcc not found")

    model = tiny_bigvgan()
    assert "did not build (RuntimeError: nvcc not found)" in voc.use_cuda_kernel(model, build=no_compiler)
    assert any(isinstance(m, Activation1d) for m in model.modules())


def test_accelerate_on_cuda_falls_back_and_says_why(monkeypatch, caplog):
    def no_compiler(device):
        raise RuntimeError("nvcc not found")

    monkeypatch.setitem(sys.modules, "tag_make_an_audio.snake_triton", None)  # no Triton either
    monkeypatch.setattr(voc.snake_kernel, "build", no_compiler)
    model = tiny_bigvgan()
    assert voc.accelerate(model, torch.device("cuda")) == voc.PATH_TORCH
    assert "did not build" in caplog.text


def test_cuda_kernel_that_disagrees_is_not_used():
    model = tiny_bigvgan()
    assert "disagrees" in voc.use_cuda_kernel(model, build=lambda device: PolyphaseKernel(offset=1.0))
    assert not any(isinstance(m, FusedSnake) for m in model.modules())


def test_cuda_kernel_that_agrees_replaces_every_activation_and_keeps_the_output():
    model, kernel = tiny_bigvgan(), PolyphaseKernel()
    count = sum(isinstance(m, Activation1d) for m in model.modules())
    mel = torch.randn(2, model.h.num_mels, 12, generator=torch.Generator().manual_seed(3)) - 3
    with torch.inference_mode():
        want = model(mel)
    assert voc.use_cuda_kernel(model, build=lambda device: kernel) == ""
    assert sum(isinstance(m, FusedSnake) for m in model.modules()) == count
    assert not any(isinstance(m, Activation1d) for m in model.modules())
    with torch.inference_mode():
        torch.testing.assert_close(model(mel), want, rtol=1e-4, atol=1e-5)
    assert kernel.calls > count  # the probe, then every activation of the forward pass


@pytest.mark.parametrize("kind,logscale", [(SnakeBeta, True), (SnakeBeta, False), (Snake, True), (Snake, False)])
def test_fused_snake_equals_bigvgan_activation_for_every_parameter_scale(kind, logscale):
    """The kernel exponentiates alpha and beta: linear-scale parameters must reach it as logarithms."""
    module = snake_activation(kind, 5, logscale, seed=7)
    x = 3 * torch.randn(2, 5, 45, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        torch.testing.assert_close(FusedSnake(PolyphaseKernel(), module)(x), module(x), rtol=1e-5, atol=1e-5)


def test_kernel_sources_ship_with_bigvgan():
    assert all(path.is_file() for path in snake_kernel.sources())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled kernels need a CUDA device")
@pytest.mark.parametrize("use", [voc.use_triton_kernel, voc.use_cuda_kernel], ids=["triton", "bigvgan-nvcc"])
def test_gpu_kernel_is_used_and_matches_the_pytorch_path_on_this_gpu(use, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # the PyTorch path in true fp32
    model = tiny_bigvgan().cuda()
    mel = (torch.randn(2, model.h.num_mels, 700, generator=torch.Generator().manual_seed(3)) - 3).cuda()
    with torch.inference_mode():
        want = model(mel)
    assert use(model) == ""
    assert not any(isinstance(m, Activation1d) for m in model.modules())
    with torch.inference_mode():
        torch.testing.assert_close(model(mel), want, rtol=1e-3, atol=1e-3)


@pytest.mark.slow
def test_full_size_vocoder_reproduces_the_official_output(golden_weights, golden_dir, cpu_activation_path):
    """Golden case A: the official BigVGAN's pre-tanh output for the official mel, within the golden tolerance."""
    from tag_make_an_audio.checkpoint import Layout
    from tag_make_an_audio.model import load_vocoder

    with np.load(golden_dir / "case_a.npz", allow_pickle=False) as case:
        mel, want = torch.from_numpy(case["mel"][:, 0]).float(), torch.from_numpy(case["wav_pre_tanh"]).float()
    vocoder, path = load_vocoder(Layout(golden_weights), torch.device("cpu"))
    assert path == cpu_activation_path
    pre = []
    hook = vocoder.conv_post.register_forward_hook(lambda module, args, out: pre.append(out))
    with torch.inference_mode():
        vocoder(mel)
    hook.remove()
    assert (pre[0].reshape(-1) - want).abs().max().item() <= 1e-2

"""The Triton snake (snake_triton.py) computes what the PyTorch polyphase form does.

Without a GPU the kernel runs under Triton's interpreter (TRITON_INTERPRET=1, numpy on the CPU): the same kernel
source, launch grid and masks, so tile edges, padding and the channel of each row are checked here; a CUDA test
checks the compiled kernel where a GPU is present.
"""
from __future__ import annotations

import copy
import functools
import sys

import pytest
import torch
from bigvgan.activations import Snake, SnakeBeta
from bigvgan.alias_free_activation.torch.act import Activation1d

from tag_make_an_audio import vocoder as voc

from tag_testkit.bigvgan_tiny import snake_activation, tiny_bigvgan

triton = pytest.importorskip("triton", reason="Triton comes with torch's Linux wheels; this torch has none")
snake_triton = pytest.importorskip("tag_make_an_audio.snake_triton")


@pytest.fixture
def interpreted(monkeypatch):
    """The kernel under Triton's CPU interpreter (the variable must be set while it is jitted and launched; the
    helpers it calls were jitted for the GPU at import, so they are jitted again too)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    for name, value in list(vars(snake_triton).items()):
        if isinstance(value, triton.runtime.JITFunction):
            monkeypatch.setattr(snake_triton, name, triton.jit(value.fn))
    return functools.partial(snake_triton.snake, jitted=triton.jit(snake_triton._snake_kernel))


def kernel_snake(run, module) -> voc.KernelSnake:
    return voc.KernelSnake(run, voc.PolyphaseSnake.from_bigvgan(module), "cpu")


# BLOCK (512) outputs per program: lengths around one and two blocks, and shorter than the 5-sample padding
@pytest.mark.parametrize("length", [1, 2, 3, 6, 17, 511, 512, 513, 1029])
def test_triton_snake_equals_polyphase_form(interpreted, length):
    module = snake_activation(SnakeBeta, 3, True, seed=length)
    x = 3 * torch.randn(2, 3, length, generator=torch.Generator().manual_seed(length))
    with torch.inference_mode():
        want = voc.PolyphaseSnake.from_bigvgan(module)(x)
        got = kernel_snake(interpreted, module)(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind,logscale", [(SnakeBeta, True), (SnakeBeta, False), (Snake, True), (Snake, False)])
def test_triton_snake_equals_bigvgan_activation(interpreted, kind, logscale):
    module = snake_activation(kind, 4, logscale, seed=3)
    x = 3 * torch.randn(2, 4, 70, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        torch.testing.assert_close(kernel_snake(interpreted, module)(x), module(x), rtol=1e-5, atol=1e-5)


def test_triton_snake_holds_for_large_arguments(interpreted):
    module = snake_activation(Snake, 2, False, seed=5)
    x = 2000 * torch.randn(1, 2, 90, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        want = voc.PolyphaseSnake.from_bigvgan(module)(x)
        got = kernel_snake(interpreted, module)(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


def test_whole_vocoder_with_the_triton_snake_is_unchanged(interpreted):
    original = tiny_bigvgan()
    fast = copy.deepcopy(original)
    count = sum(isinstance(m, Activation1d) for m in original.modules())
    assert voc.use_triton_kernel(fast, run=interpreted) == ""
    assert sum(isinstance(m, voc.KernelSnake) for m in fast.modules()) == count
    assert not any(isinstance(m, Activation1d) for m in fast.modules())
    mel = torch.randn(2, original.h.num_mels, 12, generator=torch.Generator().manual_seed(3)) - 3
    with torch.inference_mode():
        torch.testing.assert_close(fast(mel), original(mel), rtol=1e-4, atol=1e-5)


def test_triton_snake_that_disagrees_is_not_used(interpreted):
    model = tiny_bigvgan()
    assert "disagrees" in voc.use_triton_kernel(model, run=lambda *args: interpreted(*args) + 1.0)
    assert not any(isinstance(m, voc.KernelSnake) for m in model.modules())


def test_accelerate_on_cuda_tries_bigvgan_kernel_when_triton_is_missing(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "tag_make_an_audio.snake_triton", None)  # import fails as if not installed
    tried = []
    monkeypatch.setattr(voc, "use_cuda_kernel", lambda vocoder: tried.append(vocoder) or "")
    model = tiny_bigvgan()
    assert voc.accelerate(model, torch.device("cuda")) == voc.PATH_CUDA_KERNEL
    assert tried == [model]
    assert "Triton is not installed" in caplog.text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled Triton kernel needs a CUDA device")
def test_triton_snake_compiles_and_matches_the_pytorch_path_on_this_gpu(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # the PyTorch path in true fp32
    model = tiny_bigvgan().cuda()
    mel = (torch.randn(2, model.h.num_mels, 700, generator=torch.Generator().manual_seed(3)) - 3).cuda()
    with torch.inference_mode():
        want = model(mel)
    assert voc.accelerate(model, torch.device("cuda")) == voc.PATH_TRITON
    with torch.inference_mode():
        torch.testing.assert_close(model(mel), want, rtol=1e-4, atol=1e-4)

"""Both compiled snakes compute what the PyTorch polyphase form (and so bigvgan's `Activation1d`) computes: the C
kernel (snake_cpu.c, tiles of 512 outputs) and the Triton kernel (snake_triton.py, 512 outputs a program, run by
Triton's interpreter here; a GPU test in test_vocoder.py runs it compiled)."""
from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from bigvgan.activations import Snake, SnakeBeta

from tag_make_an_audio import vocoder as voc

from tag_testkit.bigvgan_tiny import snake_activation


@pytest.fixture(params=["c", "triton"])
def compiled_snake(request) -> Callable[[torch.nn.Module], voc.KernelSnake]:
    """module -> its twin run by one of the compiled kernels."""
    run = request.getfixturevalue("library").forward if request.param == "c" \
        else request.getfixturevalue("triton_interpreted")
    return lambda module: voc.KernelSnake(run, voc.PolyphaseSnake.from_bigvgan(module), "cpu")


# lengths around one and two tiles, and shorter than the 5-sample padding or the tiles' overlap
@pytest.mark.parametrize("length", [1, 2, 3, 6, 17, 300, 508, 511, 512, 513, 1021, 1025, 1300])
@pytest.mark.parametrize("threads", [1, 3])  # the C kernel splits rows over torch's thread count
def test_compiled_snake_equals_polyphase_form(compiled_snake, length, threads, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    module = snake_activation(SnakeBeta, 5, True, seed=length)
    x = 3 * torch.randn(2, 5, length, generator=torch.Generator().manual_seed(length))
    with torch.inference_mode():
        want = voc.PolyphaseSnake.from_bigvgan(module)(x)
        got = compiled_snake(module)(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind,logscale", [(SnakeBeta, True), (SnakeBeta, False), (Snake, True), (Snake, False)])
def test_compiled_snake_equals_bigvgan_activation(compiled_snake, kind, logscale):
    module = snake_activation(kind, 7, logscale, seed=3)
    x = 3 * torch.randn(3, 7, 700, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        torch.testing.assert_close(compiled_snake(module)(x), module(x), rtol=1e-5, atol=1e-5)


def test_sine_holds_for_large_arguments(compiled_snake):
    """The C kernel reduces arguments by multiples of pi itself: thousands of periods out it still matches torch."""
    module = snake_activation(Snake, 4, False, seed=5)
    x = 2000 * torch.randn(1, 4, 600, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        want = voc.PolyphaseSnake.from_bigvgan(module)(x)
        got = compiled_snake(module)(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


def test_strided_and_double_inputs(compiled_snake):
    """A strided input is made contiguous for the kernel; a float64 one takes the PyTorch form."""
    module = snake_activation(SnakeBeta, 4, True, seed=8)
    twin = compiled_snake(module)
    x = torch.randn(4, 2, 90, generator=torch.Generator().manual_seed(9)).transpose(0, 1)  # (2, 4, 90), strided
    with torch.inference_mode():
        torch.testing.assert_close(twin(x), module(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(twin(x.double()), module(x).double(), rtol=1e-5, atol=1e-5)

"""The compiled CPU snake (snake_cpu.c) computes what the PyTorch polyphase form does, at every tile boundary."""
from __future__ import annotations

import copy
import shlex

import pytest
import torch
from bigvgan.activations import Snake, SnakeBeta
from bigvgan.alias_free_activation.torch.act import Activation1d

from tag_make_an_audio import snake_cpu
from tag_make_an_audio import vocoder as voc

from tag_testkit.bigvgan_tiny import snake_activation, tiny_bigvgan


@pytest.fixture(scope="module")
def library() -> snake_cpu.SnakeLibrary:
    try:
        return snake_cpu.build()
    except snake_cpu.BuildError as exc:
        pytest.skip(f"the fused CPU snake needs a C compiler: {exc}")


def fused(library: snake_cpu.SnakeLibrary, module) -> voc.KernelSnake:
    return voc.KernelSnake(library.forward, voc.PolyphaseSnake.from_bigvgan(module), "cpu")


# 512 is the kernel's tile: lengths around one and two tiles, and a last tile shorter than the 5-sample overlap
@pytest.mark.parametrize("length", [1, 2, 6, 17, 300, 508, 511, 512, 513, 1021, 1024, 1025, 1300])
@pytest.mark.parametrize("threads", [1, 3])
def test_fused_cpu_snake_equals_polyphase_form(library, length, threads, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    module = snake_activation(SnakeBeta, 5, True, seed=length)
    x = 3 * torch.randn(2, 5, length, generator=torch.Generator().manual_seed(length))
    with torch.inference_mode():
        want = voc.PolyphaseSnake.from_bigvgan(module)(x)
        got = fused(library, module)(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind,logscale", [(SnakeBeta, True), (SnakeBeta, False), (Snake, True), (Snake, False)])
def test_fused_cpu_snake_equals_bigvgan_activation(library, kind, logscale):
    module = snake_activation(kind, 7, logscale, seed=3)
    x = 3 * torch.randn(3, 7, 700, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        torch.testing.assert_close(fused(library, module)(x), module(x), rtol=1e-5, atol=1e-5)


def test_sine_holds_for_large_arguments(library):
    """Its own sine reduces arguments by multiples of pi: thousands of periods out it still matches torch's."""
    module = snake_activation(Snake, 4, False, seed=5)
    x = 2000 * torch.randn(1, 4, 600, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        want = voc.PolyphaseSnake.from_bigvgan(module)(x)
        got = fused(library, module)(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


def test_strided_and_double_inputs(library):
    """A strided input is made contiguous for the kernel; a float64 one takes the PyTorch form."""
    module = snake_activation(SnakeBeta, 4, True, seed=8)
    twin = fused(library, module)
    x = torch.randn(4, 2, 90, generator=torch.Generator().manual_seed(9)).transpose(0, 1)  # (2, 4, 90), strided
    with torch.inference_mode():
        torch.testing.assert_close(twin(x), module(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(twin(x.double()), module(x).double(), rtol=1e-5, atol=1e-5)


def test_accelerate_picks_the_compiled_snake_and_keeps_the_output(library):
    original = tiny_bigvgan()
    fast = copy.deepcopy(original)
    assert voc.accelerate(fast, torch.device("cpu")) == voc.PATH_CPU_KERNEL
    assert sum(isinstance(m, voc.KernelSnake) for m in fast.modules()) == \
        sum(isinstance(m, Activation1d) for m in original.modules())
    mel = torch.randn(2, original.h.num_mels, 12, generator=torch.Generator().manual_seed(3)) - 3
    with torch.inference_mode():
        torch.testing.assert_close(fast(mel), original(mel), rtol=1e-4, atol=1e-5)


def test_missing_compiler_leaves_the_pytorch_polyphase_form(monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model = tiny_bigvgan()
    assert voc.accelerate(model, torch.device("cpu")) == voc.PATH_POLYPHASE
    assert "the fused CPU snake did not build" in caplog.text and "no-such-cc" in caplog.text
    assert not any(isinstance(m, voc.KernelSnake) for m in model.modules())


def test_a_library_that_will_not_load_leaves_the_pytorch_form(monkeypatch, caplog):
    """E.g. a cache folder on a noexec mount: the build exists but the loader cannot map it."""
    def unloadable() -> snake_cpu.SnakeLibrary:
        raise OSError("failed to map segment from shared object")

    monkeypatch.setattr(snake_cpu, "build", unloadable)
    assert voc.accelerate(tiny_bigvgan(), torch.device("cpu")) == voc.PATH_POLYPHASE
    assert "failed to map segment" in caplog.text


def test_compiler_errors_are_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "false")  # runs, and fails with every flag set
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(snake_cpu.BuildError, match="false -O3 exited with status 1"):
        snake_cpu.build()
    assert not list((tmp_path / "tag" / "kernels").glob("*.so"))  # no half-written library left to load


def test_compiler_without_native_tuning_still_builds_a_correct_kernel(library, monkeypatch, tmp_path):
    fussy = tmp_path / "cc"
    real = shlex.join(snake_cpu.compiler())
    fussy.write_text(f'#!/bin/sh\ncase "$*" in *-march=native*) exit 1;; esac\nexec {real} "$@"\n')
    fussy.chmod(0o755)
    monkeypatch.setenv("CC", str(fussy))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    plain = snake_cpu.build()
    module = snake_activation(SnakeBeta, 3, True, seed=11)
    x = 3 * torch.randn(2, 3, 600, generator=torch.Generator().manual_seed(12))
    with torch.inference_mode():
        torch.testing.assert_close(fused(plain, module)(x), module(x), rtol=1e-5, atol=1e-5)


def test_a_library_that_disagrees_is_not_used(library):
    class Off:
        def forward(self, x, taps, alpha, inv_beta):
            return library.forward(x, taps, alpha, inv_beta) + 1.0

    chosen, why_not = voc.cpu_kernel(tiny_bigvgan(), build=Off)
    assert chosen is None and "disagrees" in why_not


def test_build_is_cached_per_source_and_cpu(library, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = snake_cpu.build()
    built = first.path.stat().st_mtime_ns
    assert snake_cpu.build().path == first.path and first.path.stat().st_mtime_ns == built
    monkeypatch.setattr(snake_cpu, "cpu_signature", lambda: "flags : another cpu")
    assert snake_cpu.build().path != first.path

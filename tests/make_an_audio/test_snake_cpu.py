"""The compiled CPU snake (snake_cpu.c): how it is built, cached and taken up, and what happens when it cannot be.
(Its arithmetic against the PyTorch form: test_snake_kernels.py.)"""
from __future__ import annotations

import copy
import shlex

import pytest
import torch
from bigvgan.activations import SnakeBeta
from bigvgan.alias_free_activation.torch.act import Activation1d

from tag_make_an_audio import snake_cpu
from tag_make_an_audio import vocoder as voc

from tag_testkit.bigvgan_tiny import snake_activation, tiny_bigvgan


def fused(library: snake_cpu.SnakeLibrary, module) -> voc.KernelSnake:
    return voc.KernelSnake(library.forward, voc.PolyphaseSnake.from_bigvgan(module), "cpu")


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

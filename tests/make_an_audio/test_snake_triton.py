"""How the vocoder takes up the Triton snake: every activation swapped when it agrees, none when it does not, and
bigvgan's CUDA kernel tried when Triton is missing. (The kernel's arithmetic: test_snake_kernels.py, under Triton's
interpreter; compiled on a GPU: test_vocoder.py.)"""
from __future__ import annotations

import copy
import sys

import torch
from bigvgan.alias_free_activation.torch.act import Activation1d

from tag_make_an_audio import vocoder as voc

from tag_testkit.bigvgan_tiny import tiny_bigvgan


def test_whole_vocoder_with_the_triton_snake_is_unchanged(triton_interpreted):
    original = tiny_bigvgan()
    fast = copy.deepcopy(original)
    count = sum(isinstance(m, Activation1d) for m in original.modules())
    assert voc.use_triton_kernel(fast, run=triton_interpreted) == ""
    assert sum(isinstance(m, voc.KernelSnake) for m in fast.modules()) == count
    assert not any(isinstance(m, Activation1d) for m in fast.modules())
    mel = torch.randn(2, original.h.num_mels, 12, generator=torch.Generator().manual_seed(3)) - 3
    with torch.inference_mode():
        torch.testing.assert_close(fast(mel), original(mel), rtol=1e-4, atol=1e-5)


def test_triton_snake_that_disagrees_is_not_used(triton_interpreted):
    model = tiny_bigvgan()
    assert "disagrees" in voc.use_triton_kernel(model, run=lambda *args: triton_interpreted(*args) + 1.0)
    assert not any(isinstance(m, voc.KernelSnake) for m in model.modules())


def test_accelerate_on_cuda_tries_bigvgan_kernel_when_triton_is_missing(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "tag_make_an_audio.snake_triton", None)  # import fails as if not installed
    tried = []
    monkeypatch.setattr(voc, "use_cuda_kernel", lambda vocoder: tried.append(vocoder) or "")
    model = tiny_bigvgan()
    assert voc.accelerate(model, torch.device("cuda")) == voc.PATH_CUDA_KERNEL
    assert tried == [model]
    assert "Triton is not installed" in caplog.text

"""SpectralConv1d computes F.conv1d's 'same' convolution (any dilation, length, batch) within float32 rounding."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tag_make_an_audio.spectral_conv import SpectralConv1d, available, dft_rows, inverse_rows

pytestmark = pytest.mark.skipif(not available(), reason="this torch build has no oneDNN (mkldnn) CPU ops")

TOLERANCE = 2e-6
"""Max abs error allowed, relative to the output's largest magnitude (float32 transforms: a few 1e-7 seen)."""


def conv(in_channels: int, out_channels: int, taps: int, dilation: int, bias: bool, seed: int) -> torch.nn.Conv1d:
    torch.manual_seed(seed)
    return torch.nn.Conv1d(in_channels, out_channels, taps, dilation=dilation, padding=dilation * (taps - 1) // 2,
                           bias=bias).eval()


def assert_same(module: torch.nn.Conv1d, fast: SpectralConv1d, x: torch.Tensor) -> None:
    with torch.inference_mode():
        want, got = module(x), fast(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=TOLERANCE * want.abs().max().item())


@pytest.mark.parametrize("taps,dilation,block", [(3, 1, 8), (7, 1, 16), (7, 3, 16), (11, 1, 16), (11, 5, 16),
                                                 (11, 3, 12), (5, 2, 32), (1, 1, 2)])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_conv1d_at_edge_lengths(taps, dilation, block, bias):
    module = conv(6, 5, taps, dilation, bias, seed=taps * 10 + dilation)
    fast = SpectralConv1d(module, block)
    step = block - taps + 1
    lengths = sorted({1, 2, dilation, step - 1, step, step + 1, dilation * step, dilation * step + 1,
                      module.padding[0], 3 * dilation * step - 1, 97} - {0})
    for i, length in enumerate(lengths):  # one module through all lengths: the weights are re-laid out each time
        batch = 1 + i % 3
        assert_same(module, fast, torch.randn(batch, 6, length, generator=torch.Generator().manual_seed(i)))


def test_matches_conv1d_at_bigvgan_scale():
    """The widest residual convolution's shape class (kernel 11, dilation 5) on many channels."""
    module = conv(96, 96, 11, 5, True, seed=1)
    x = torch.randn(1, 96, 1000, generator=torch.Generator().manual_seed(2))
    for block in (16, 32):
        assert_same(module, SpectralConv1d(module, block), x)


def test_inverse_undoes_the_forward_transform():
    """The Gauss rows round-trip: a signal's rows with unit kernel products (t1 = Re, t2 = 0, t3 = Re + Im)."""
    n = 16
    x = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    rows = dft_rows(n) @ x
    k = n // 2 - 1
    re, im = rows[2:2 + k], rows[2 + k:2 + 2 * k]
    products = torch.cat([rows[:2], re, torch.zeros(k, dtype=torch.float64), re + im])  # H = 1: t1 = Re, t3 = Re + Im
    torch.testing.assert_close(inverse_rows(n, range(n)) @ products, x)


@pytest.mark.parametrize("change", [dict(stride=2), dict(groups=2), dict(padding=0), dict(padding_mode="reflect")])
def test_rejects_convolutions_it_does_not_compute(change):
    args = dict(in_channels=4, out_channels=4, kernel_size=3, padding=1) | change
    with pytest.raises(ValueError, match="same"):
        SpectralConv1d(torch.nn.Conv1d(**args), 8)


@pytest.mark.parametrize("block", [11, 10, 9])
def test_rejects_blocks_too_short_or_odd(block):
    with pytest.raises(ValueError, match="block"):
        SpectralConv1d(conv(2, 2, 11, 1, True, seed=0), block)

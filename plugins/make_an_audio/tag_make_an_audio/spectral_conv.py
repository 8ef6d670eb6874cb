"""A 'same'-padded Conv1d computed blockwise in the frequency domain, for BigVGAN's residual blocks on the CPU.

BigVGAN's CPU time is mostly its residual blocks' dense convolutions (kernels 3, 7, 11 at dilations 1, 3, 5), and
oneDNN already runs them near the machine's peak, so they only get faster with fewer multiplications. Overlap-save
does that: cut the zero-padded input into overlapping blocks of `n` samples, take each block's real DFT, multiply
by the kernel's, transform back and keep the `n - k + 1` samples that did not wrap around. The channel mixing
becomes one (out x in) matrix product per spectral row and block, where the direct convolution needs one per
kernel tap and output sample. With Gauss's three-multiplication complex product (rows DC, Nyquist, and Re, Im,
Re + Im of the other bins) a block of `n` costs `1.5 n - 1` products for `n - k + 1` outputs: for k = 11 that
is 23 per 6 outputs at n = 16 (2.9x fewer than direct) and 47 per 22 at n = 32 (5.1x fewer).

All of it is real arithmetic on time-major (channels-last) data: the forward DFT (Gauss sums folded in as extra
rows) and the inverse DFT (Gauss recombination folded in) are small matrices applied to all blocks at once, and the
mixing is one grouped 1x1 convolution through oneDNN with its weight layout prepared once at load (re-laying out
the spectral weights on every call would cost as much as the products). A dilated convolution is an undilated one
over the `d` interleaved subsequences of its input, so dilation only reshapes. The kernel's transform is computed
in float64 and replaces the kernel; it takes `(1.5 n - 1) / k` times the kernel's memory (k = 11: 2.1x at n = 16,
4.3x at n = 32), which is why the caller picks `n` per layer.

Equality: this is the same linear map as `F.conv1d`, but not bitwise: float32 rounding of the transforms gives
a relative error of a few 1e-7 per convolution (tests hold it to 2e-6 of the output's scale); over BigVGAN's 72
residual convolutions the waveform stays within the golden tolerance.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def available() -> bool:
    """Whether this torch build has the oneDNN ops the mixing uses (true for the standard x86/ARM CPU wheels)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise") and \
        hasattr(torch._C._nn, "mkldnn_reorder_conv2d_weight")


def spectral_rows(n: int) -> int:
    """Products per block of `n` (n even): DC and Nyquist, and three (Gauss) for each of the n/2 - 1 other bins."""
    return 2 + 3 * (n // 2 - 1)


def dft_rows(n: int) -> torch.Tensor:
    """(spectral_rows(n), n) float64: DC, Nyquist, then Re, Im and Re + Im of bins 1 .. n/2 - 1 (Gauss's product)."""
    t = torch.arange(n, dtype=torch.float64)
    k = torch.arange(1, n // 2, dtype=torch.float64)[:, None]
    angle = 2 * math.pi * k * t / n
    cos, sin = angle.cos(), angle.sin()
    return torch.cat([torch.ones(1, n, dtype=torch.float64), torch.cos(math.pi * t)[None], cos, -sin, cos - sin])


def inverse_rows(n: int, keep: range) -> torch.Tensor:
    """(len(keep), rows) float64: samples `keep` of the inverse real DFT, from DC, Nyquist and Gauss's t1, t2, t3.

    Bin k's product is Re = t1 - t2, Im = t3 - t1 - t2, and sample m of the inverse real DFT takes
    (2 / n) (Re cos - Im sin) from it, i.e. (2 / n) (t1 (cos + sin) + t2 (sin - cos) - t3 sin).
    """
    t = torch.tensor(list(keep), dtype=torch.float64)[:, None]
    k = torch.arange(1, n // 2, dtype=torch.float64)[None]
    angle = 2 * math.pi * k * t / n
    cos, sin = angle.cos(), angle.sin()
    real = torch.cat([torch.ones_like(t), torch.cos(math.pi * t)], dim=1) / n
    return torch.cat([real, torch.cat([cos + sin, sin - cos, -sin], dim=1) * (2 / n)], dim=1)


class SpectralConv1d(nn.Module):
    """`conv` (an nn.Conv1d with 'same' padding, stride 1, one group) by overlap-save over `block`-sample blocks.

    CPU only (the mixing weights are held in oneDNN's layout).
    """

    def __init__(self, conv: nn.Conv1d, block: int) -> None:
        super().__init__()
        only = "SpectralConv1d computes stride-1, ungrouped, zero-padded 'same' convolutions only"
        if isinstance(conv.padding, str):  # padding given by name ('same' / 'valid'), not as a number of samples
            raise ValueError(only)
        (taps,), (dilation,), (padding,) = conv.kernel_size, conv.dilation, conv.padding
        if conv.stride != (1,) or conv.groups != 1 or conv.padding_mode != "zeros" or \
                2 * padding != dilation * (taps - 1):
            raise ValueError(only)
        if block % 2 or block <= taps:
            raise ValueError(f"block {block} must be even and longer than the kernel ({taps} taps)")
        self.taps, self.dilation, self.padding, self.block = taps, dilation, padding, block
        self.step = block - taps + 1  # outputs per block
        forward = dft_rows(block)
        self.rows = forward.shape[0]
        self.forward_rows = nn.Buffer(forward.float())  # (rows, block)
        self.inverse_rows = nn.Buffer(inverse_rows(block, range(taps - 1, block)).float())  # (step, rows)
        # conv1d correlates; a circular convolution with the reversed kernel gives its outputs at taps-1 .. block-1
        weight = conv.weight.detach().double().flip(-1)
        spectra = torch.einsum("gn,oin->goi", forward[:, :taps], weight)  # (rows, out, in)
        # a constant added to every output sample is `block` times it in the DC row and nothing in the others
        bias = torch.zeros(self.rows, conv.out_channels, dtype=torch.float64)
        if conv.bias is not None:
            bias[0] = conv.bias.detach().double() * block
        self.bias = nn.Buffer(bias.flatten().float())
        # the mixing weights as a oneDNN tensor, laid out for the last input shape seen (see `_mix`)
        self.packed = spectra.flatten(0, 1)[..., None, None].float().to_mkldnn()
        self.packed_for: tuple[int, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, length = x.shape
        d, step = self.dilation, self.step
        per_phase = -(-length // d)  # outputs of each of the d interleaved subsequences
        blocks = -(-per_phase // step)
        phase_length = blocks * step + self.taps - 1
        # zero-padded time-major copy; sample d*j + p is sample j of phase p: (batch, d, phase_length, channels)
        padded = x.new_empty(batch, d * phase_length, channels)
        padded[:, :self.padding].zero_()
        padded[:, self.padding + length:].zero_()
        padded[:, self.padding:self.padding + length] = x.transpose(1, 2)
        phases = padded.view(batch, phase_length, d, channels).transpose(1, 2)
        columns = batch * d * blocks
        windows = phases.unfold(2, self.block, step).transpose(-1, -2).reshape(columns, self.block, channels)
        spectra = torch.matmul(self.forward_rows, windows)  # (columns, rows, channels)
        # rows * channels per column, channels-last: the layout the grouped 1x1 convolution reads without a copy
        spectra = spectra.view(1, columns, 1, -1).permute(0, 3, 2, 1)
        mixed = self._mix(spectra)
        mixed = mixed.permute(0, 3, 2, 1).reshape(columns, self.rows, -1)
        out = torch.matmul(self.inverse_rows, mixed)  # (columns, step, out): time-major again
        out = out.view(batch, d, blocks * step, -1).permute(0, 3, 2, 1).reshape(batch, -1, blocks * step * d)
        return out[..., :length]

    def _mix(self, spectra: torch.Tensor) -> torch.Tensor:
        """One (out x in) product per spectral row: a grouped 1x1 convolution with prepared weights.

        oneDNN picks its weight layout for the input's shape, and a weight in another layout is re-laid out on
        every call (as plain `F.conv2d` always does), which costs as much as the products. So the weights are
        re-laid out once whenever the input shape changes (once per clip length) and kept that way; one copy.
        A weight in any layout gives the same products, so callers racing with other shapes only cost time.
        """
        shape = tuple(spectra.shape)
        if shape != self.packed_for:
            # torch's stub omits the optional input_size argument the function takes at run time
            self.packed = torch._C._nn.mkldnn_reorder_conv2d_weight(  # type: ignore[call-arg]
                self.packed, [0, 0], [1, 1], [1, 1], self.rows, list(shape))
            self.packed_for = shape
        return torch.ops.mkldnn._convolution_pointwise(
            spectra, self.packed, self.bias, [0, 0], [1, 1], [1, 1], self.rows, "none", [], "")

"""BigVGAN's anti-aliased snake as one Triton kernel: the polyphase arithmetic of vocoder.PolyphaseSnake, per tile.

Why: on an H100 bigvgan's PyTorch activations are 80% of the vocoder's time (cuDNN runs the 2x upsampler as a
grouped transposed convolution at a small fraction of the card's speed, and replicate padding, snake and the
lowpass each make another pass over memory): 0.33 s of 0.41 s for eight 10 s clips. Here each program loads the 11
input samples around each of its outputs once, forms the two upsampled phases (6 taps each) at the 6 positions the
lowpass needs, applies the snake and sums the lowpass, writing each output once. Triton compiles it for the
worker's own GPU in about a second (no nvcc, no build cache to keep), and `TRITON_INTERPRET=1` runs the same
kernel on the CPU, which is how the tests check it against the PyTorch form.

Phase positions follow PolyphaseSnake: even phase sample p (2 <= p < L + 2) and odd phase sample p
(3 <= p < L + 3) are 6-tap filters of the input replicate-padded by 5, xp[p .. p + 5]; the lowpass's replicate
padding repeats the first even sample (even[2]) below those ranges and the last odd one (odd[L + 2]) above.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any

import torch
import triton
import triton.language as tl

BLOCK = 512  # outputs per program


@triton.jit
def _shifted(source, m, shift: tl.constexpr, length):  # noqa: ANN001, ANN202
    """x[clamp(m + shift, 0, L - 1)]: the input at offset `shift`, replicate-padded."""
    return tl.load(source + tl.minimum(tl.maximum(m + shift, 0), length - 1))


@triton.jit
def _six(taps):  # noqa: ANN001, ANN202
    """Six filter taps, loaded once."""
    return (tl.load(taps), tl.load(taps + 1), tl.load(taps + 2), tl.load(taps + 3), tl.load(taps + 4),
            tl.load(taps + 5))


def _snake_kernel(x, out, taps, alpha, inv_beta, channels, length, BLOCK: tl.constexpr):  # noqa: ANN001, N803
    """Outputs [tile * BLOCK, +BLOCK) of row `program_id(0)` (channel = row % channels)."""
    row = tl.program_id(0).to(tl.int64)
    m = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    source = x + row * length
    channel = row % channels
    a = tl.load(alpha + channel)
    b = tl.load(inv_beta + channel)
    up_even, up_odd, down_even, down_odd = _six(taps), _six(taps + 6), _six(taps + 12), _six(taps + 18)
    # the lowpass's padding values: even[2] = sum up_even[i] xp[2 + i], odd[L + 2] = sum up_odd[i] xp[L + 2 + i]
    # (xp[k] = x[clamp(k - 5, 0, L - 1)], the input replicate-padded by 5)
    first = 0.0
    last = 0.0
    for i in tl.static_range(6):
        first += up_even[i] * tl.load(source + tl.minimum(tl.maximum(i - 3, 0), length - 1))
        last += up_odd[i] * tl.load(source + tl.minimum(tl.maximum(length - 3 + i, 0), length - 1))
    # xp[m + s] for s = 0 .. 10: the 11 input samples that the 6 phase positions m .. m + 5 need, loaded once
    xs = (_shifted(source, m, -5, length), _shifted(source, m, -4, length), _shifted(source, m, -3, length),
          _shifted(source, m, -2, length), _shifted(source, m, -1, length), _shifted(source, m, 0, length),
          _shifted(source, m, 1, length), _shifted(source, m, 2, length), _shifted(source, m, 3, length),
          _shifted(source, m, 4, length), _shifted(source, m, 5, length))
    acc = tl.full([BLOCK], 0.0, tl.float32)
    for j in tl.static_range(6):
        p = m + j
        even = tl.full([BLOCK], 0.0, tl.float32)
        odd = tl.full([BLOCK], 0.0, tl.float32)
        for i in tl.static_range(6):
            even += up_even[i] * xs[j + i]
            odd += up_odd[i] * xs[j + i]
        even = tl.where(p < 2, first, tl.where(p >= length + 2, last, even))
        odd = tl.where(p < 3, first, tl.where(p > length + 2, last, odd))
        s_even = tl.sin(a * even)
        s_odd = tl.sin(a * odd)
        acc += down_even[j] * (even + b * s_even * s_even)
        acc += down_odd[j] * (odd + b * s_odd * s_odd)
    tl.store(out + row * length + m, acc, mask=m < length)


@functools.cache
def kernel() -> Any:
    """The jitted kernel (compiled per GPU on first launch; interpreted on the CPU under TRITON_INTERPRET=1)."""
    return triton.jit(_snake_kernel)


def snake(x: torch.Tensor, taps: torch.Tensor, alpha: torch.Tensor, inv_beta: torch.Tensor,
          jitted: Any = None) -> torch.Tensor:
    """The activation of contiguous float32 `x` (N, C, L); `taps` up_even, up_odd, down_even, down_odd (24)."""
    batch, channels, length = x.shape
    out = torch.empty_like(x)
    if out.numel():
        grid = (batch * channels, -(-length // BLOCK))
        # Triton launches on the current device: make it x's (a model on cuda:1 while cuda:0 is current)
        with torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext():
            (jitted or kernel())[grid](x, out, taps, alpha, inv_beta, channels, length, BLOCK=BLOCK)
    return out

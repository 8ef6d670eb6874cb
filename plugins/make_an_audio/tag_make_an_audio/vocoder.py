"""BigVGAN computed for inference: its anti-aliased snake activations, and on the CPU its large convolutions.

BigVGAN spends most of its CPU time outside its big convolutions: every residual block wraps its snake in a
2x upsample (depthwise transposed convolution, 12 taps) and a 2x downsample (depthwise strided convolution,
12 taps), with replicate padding around each. oneDNN runs these one-channel-per-group filters at a small
fraction of the speed it reaches on the dense convolutions, and the snake's parameters are exponentiated on
every call. Written in polyphase form the same function needs no convolution at all:

* the upsampled signal's even and odd samples are two 6-tap filters of the input (the transposed
  convolution's taps split by parity), so nothing is computed for the zeros it would insert;
* the snake is elementwise, so it runs on the two phases without interleaving them;
* the 12-tap stride-2 lowpass is a 6-tap filter of each phase, summed, so only the kept samples are made.

Each filter is a handful of scaled, shifted adds over whole tensors (memory-bound, vectorised), and the
snake's alpha and 1 / beta are computed once at load. The result equals bigvgan's `Activation1d` up to float
summation order. Where the machine has a C compiler, the same arithmetic runs as one pass per row (`snake_cpu`),
which keeps each row in the cache instead of making about 30 passes over memory. On CUDA it runs as one Triton
kernel (`snake_triton`; bigvgan's own modules spent 80% of the vocoder's H100 time in these activations); where
Triton is missing or its kernel disagrees, bigvgan's fused CUDA kernel (built for the worker's GPU by
snake_kernel.py) is tried, and bigvgan's PyTorch modules stay when neither passes.

On the CPU the residual blocks' kernel-7 and kernel-11 convolutions with at least 192 channels (most of the
vocoder's arithmetic) also run in overlap-save form (`spectral_conv`), equal to the direct convolution within
float32 rounding (a few 1e-7 relative per convolution; the golden waveform tolerance holds).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn

from . import snake_cpu, snake_kernel, spectral_conv
from .snake_cpu import SnakeLibrary
from .snake_kernel import Activation, FusedSnake, Kernel

log = logging.getLogger(__name__)

TAPS = 12  # BigVGAN's anti-aliasing filters: ratio 2, kernel 12, replicate padding (also all the CUDA kernel does)
SNAKE_EPS = 1e-9  # bigvgan's `no_div_by_zero`

PATH_POLYPHASE = "polyphase"  # this module's PyTorch form (CPU)
PATH_CPU_KERNEL = "polyphase-c"  # the same arithmetic compiled, one pass per row (snake_cpu.c)
PATH_TRITON = "polyphase-triton"  # the same arithmetic as one Triton kernel (snake_triton.py), CUDA
PATH_CUDA_KERNEL = "bigvgan-cuda-kernel"  # bigvgan's fused anti-alias activation kernel
PATH_TORCH = "bigvgan-torch"  # bigvgan's own PyTorch modules, unchanged


class PolyphaseSnake(nn.Module):
    """2x upsample -> snake (or snakebeta) -> 2x downsample, equal to bigvgan's `Activation1d` with 12 taps."""

    def __init__(self, up_filter: torch.Tensor, down_filter: torch.Tensor, alpha: torch.Tensor,
                 inv_beta: torch.Tensor) -> None:
        super().__init__()
        up = (2.0 * up_filter.detach().reshape(TAPS).double()).tolist()  # x2: the upsampler's gain, exact in float
        down = down_filter.detach().reshape(TAPS).double().tolist()
        # Upsampled sample 2q   = sum_i up[11 - 2i] * xp[q + 2 + i]; 2q+1 = sum_i up[10 - 2i] * xp[q + 3 + i]
        # (xp = input replicate-padded by 5, the transposed convolution's taps split by output parity).
        self.up_even = up[11::-2]
        self.up_odd = up[10::-2]
        # Output m = sum_j down[2j + 1] * even_p[m + j] + down[2j] * odd_p[m + j], with the phases padded so
        # that even_p[m + j] = z[2(m + j - 2)] and odd_p[m + j] = z[2(m + j - 3) + 1] (z = upsampled snake).
        self.down_even = down[1::2]
        self.down_odd = down[0::2]
        self.alpha = nn.Buffer(alpha.detach().float().reshape(-1, 1, 1), persistent=False)
        self.inv_beta = nn.Buffer(inv_beta.detach().float().reshape(-1, 1, 1), persistent=False)

    @classmethod
    def from_bigvgan(cls, module: Activation) -> PolyphaseSnake | None:
        """The polyphase twin of a bigvgan torch `Activation1d`, or None when its filters are not 2x / 12 taps."""
        return cls.of_fixed(module) if has_fixed_filters(module) else None

    @classmethod
    def of_fixed(cls, module: Activation) -> PolyphaseSnake:
        """The polyphase twin of a bigvgan torch `Activation1d` whose filters `has_fixed_filters` accepts."""
        if not has_fixed_filters(module):
            raise ValueError("the activation's filters are not the fixed 2x / 12-tap ones PolyphaseSnake computes")
        act, up, down = module.act, module.upsample, module.downsample
        alpha = act.alpha.detach()
        beta = act.beta.detach() if hasattr(act, "beta") else alpha  # Snake divides by alpha itself
        if act.alpha_logscale:
            alpha, beta = alpha.exp(), beta.exp()
        return cls(up.filter, down.lowpass.filter, alpha, 1.0 / (beta + SNAKE_EPS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, length = x.shape
        xp = F.pad(x, (5, 5), mode="replicate")
        # z[:, :, 0] = even phase at [2, 2 + length), z[:, :, 1] = odd phase at [3, 3 + length); the rest is padding.
        z = x.new_empty(batch, channels, 2, length + 5)
        even, odd = z[:, :, 0, 2:2 + length], z[:, :, 1, 3:3 + length]
        _fir(xp, self.up_even, 2, even)
        _fir(xp, self.up_odd, 3, odd)
        # The downsampler replicate-pads the upsampled signal with its first (even) and last (odd) samples.
        first, last = even[..., :1], odd[..., -1:]
        z[:, :, 0, :2] = first
        z[:, :, 1, :3] = first
        z[:, :, 0, 2 + length:] = last
        z[:, :, 1, 3 + length:] = last
        # snake(z) = z + sin(alpha z)^2 / beta, in place over both phases and their padding
        s = torch.mul(z, self.alpha).sin_()
        z.addcmul_(s.mul_(s), self.inv_beta)
        out = x.new_empty(batch, channels, length)
        _fir(z[:, :, 0], self.down_even, 0, out)
        for j, tap in enumerate(self.down_odd):
            out.add_(z[:, :, 1, j:j + length], alpha=tap)
        return out


class KernelSnake(nn.Module):
    """A `PolyphaseSnake` computed by a compiled kernel for float32 inputs on one device type (the PyTorch form
    otherwise): the C kernel on the CPU, the Triton kernel on CUDA. Both take (x, taps, alpha, inv_beta).

    Inference only, like the PyTorch polyphase form (whose in-place filters autograd cannot follow either)."""

    def __init__(self, run: Callable[..., torch.Tensor], polyphase: PolyphaseSnake, device_type: str) -> None:
        super().__init__()
        self.run = run
        self.polyphase = polyphase
        self.device_type = device_type
        taps = polyphase.up_even + polyphase.up_odd + polyphase.down_even + polyphase.down_odd
        self.taps = nn.Buffer(torch.tensor(taps, dtype=torch.float32, device=polyphase.alpha.device),
                              persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32 or x.device.type != self.device_type:
            return self.polyphase(x)
        return self.run(x.contiguous(), self.taps, self.polyphase.alpha, self.polyphase.inv_beta)


def has_fixed_filters(module: Activation) -> bool:
    """Whether a bigvgan `Activation1d` has the filters both fast paths assume: 2x, 12 taps, replicate padding."""
    up, down = module.upsample, module.downsample
    return ((up.ratio, down.ratio, up.filter.numel(), down.lowpass.filter.numel()) == (2, 2, TAPS, TAPS)
            and down.lowpass.padding_mode == "replicate" and bool(down.lowpass.padding))


def _fir(source: torch.Tensor, taps: list[float], start: int, out: torch.Tensor) -> None:
    """out[..., q] = sum_i taps[i] * source[..., q + start + i], as one scaled add per tap."""
    length = out.shape[-1]
    torch.mul(source[..., start:start + length], taps[0], out=out)
    for i, tap in enumerate(taps[1:], 1):
        out.add_(source[..., start + i:start + i + length], alpha=tap)


Found = list[tuple[nn.Module, str, Activation]]
"""(parent, child name, module) of bigvgan PyTorch `Activation1d`s."""


def _torch_activations(vocoder: nn.Module) -> Found:
    """(parent, child name, module) for every bigvgan PyTorch `Activation1d` in the vocoder."""
    from bigvgan.alias_free_activation.torch.act import Activation1d

    # cast: the isinstance test is against bigvgan's class, which publishes no type information
    return [(parent, name, cast(Activation, child)) for parent in vocoder.modules()
            for name, child in parent.named_children() if isinstance(child, Activation1d)]


def use_polyphase(vocoder: nn.Module, library: SnakeLibrary | None = None) -> int:
    """Swap bigvgan's anti-aliased activations for `PolyphaseSnake` in place (run by `library` when given);
    returns how many were swapped."""
    swapped = 0
    for parent, name, module in _torch_activations(vocoder):
        twin = PolyphaseSnake.from_bigvgan(module)
        if twin is not None:
            twin = twin.to(module.upsample.filter.device)
            parent._modules[name] = twin if library is None else KernelSnake(library.forward, twin, "cpu")
            swapped += 1
    return swapped


def cpu_kernel(vocoder: nn.Module, build: Callable[[], SnakeLibrary] | None = None) -> tuple[SnakeLibrary | None, str]:
    """The compiled snake when it builds and agrees with the PyTorch polyphase form on this vocoder; else why not."""
    found = [module for _, _, module in _torch_activations(vocoder) if has_fixed_filters(module)]
    if not found:
        return None, "the vocoder has no 2x / 12-tap bigvgan activations"
    try:
        library = (build or snake_cpu.build)()
    except (snake_cpu.BuildError, OSError) as exc:  # OSError: the built library does not load
        return None, f"the fused CPU snake did not build ({exc})"
    reference = PolyphaseSnake.of_fixed(found[0])
    why_not = _disagreement(reference, KernelSnake(library.forward, reference, "cpu"), torch.device("cpu"),
                            "the fused CPU snake")
    return (None, why_not) if why_not else (library, "")


def use_triton_kernel(vocoder: nn.Module, run: Callable[..., torch.Tensor] | None = None) -> str:
    """Swap in the Triton snake (snake_triton.py) when Triton is there and the kernel agrees with the PyTorch
    polyphase form on a probe input on the vocoder's device; why not otherwise ("" when swapped)."""
    found, why_not = _replaceable(vocoder)
    if why_not:
        return why_not
    if run is None:
        try:
            from .snake_triton import snake
        except ImportError as exc:
            return f"Triton is not installed ({exc})"
        run = snake
    device = found[0][2].act.alpha.device
    twins = [KernelSnake(run, PolyphaseSnake.of_fixed(module).to(device), device.type) for _, _, module in found]
    return _swap_if_agreeing(found, twins, device, "the Triton snake")


def use_cuda_kernel(vocoder: nn.Module, build: Callable[[torch.device], Kernel] | None = None) -> str:
    """Swap in bigvgan's fused CUDA activation when it builds and agrees with the PyTorch path; why not otherwise.

    The kernel is compiled for this GPU on first use (snake_kernel.py). Building is not proof: it is run once on
    a probe input (a length that is no multiple of its 32-sample tiles) and compared with the exact polyphase form
    of the module it replaces.
    """
    found, why_not = _replaceable(vocoder)
    if why_not:
        return why_not
    device = found[0][2].act.alpha.device
    try:
        kernel = (build or snake_kernel.build)(device)
    except Exception as exc:  # no nvcc / ninja / compiler, unwritable cache, ...
        return f"bigvgan's CUDA kernel did not build ({type(exc).__name__}: {str(exc)[:200]})"
    return _swap_if_agreeing(found, [FusedSnake(kernel, module) for _, _, module in found], device,
                             "bigvgan's CUDA kernel")


def _replaceable(vocoder: nn.Module) -> tuple[Found, str]:
    """The vocoder's bigvgan activations, when a fused kernel can replace every one of them; else why not."""
    found = _torch_activations(vocoder)
    if not found:
        return found, "the vocoder has no bigvgan PyTorch activations to replace"
    if not all(has_fixed_filters(module) for _, _, module in found):
        return found, "the vocoder's activations do not use the kernel's fixed 2x / 12-tap filters"
    return found, ""


def _swap_if_agreeing(found: Found, twins: Sequence[nn.Module], device: torch.device, what: str) -> str:
    """Put each twin in its activation's place when the first agrees with the exact polyphase form of the module
    it replaces (plain fp32 arithmetic: bigvgan's own modules run their filters through cuDNN, whose default TF32
    rounding alone puts them 3e-3, relative to the peak, off on an H100); else why not, and nothing is swapped."""
    why_not = _disagreement(PolyphaseSnake.of_fixed(found[0][2]), twins[0], device, what)
    if why_not:
        return why_not
    for (parent, name, _), twin in zip(found, twins):
        parent._modules[name] = twin
    return ""


def _disagreement(reference: PolyphaseSnake, twin: nn.Module, device: torch.device, what: str) -> str:
    """Why `what`, a compiled activation, cannot replace `reference` ("" when it may): it fails to run on a probe input
    (a length that is no multiple of a kernel's tiles or vector width), or its output differs beyond rounding."""
    probe = torch.randn(2, reference.alpha.shape[0], 1000, generator=torch.Generator().manual_seed(0)).to(device)
    try:
        with torch.inference_mode():
            want, got = reference.to(device)(probe), twin(probe)
        if probe.is_cuda:
            torch.cuda.synchronize(probe.device)
    except Exception as exc:  # e.g. "no kernel image is available" on an architecture it was not built for
        return f"{what} does not run here ({type(exc).__name__}: {str(exc)[:200]})"
    error = ((got - want).abs().max() / want.abs().max().clamp_min(1e-6)).item()
    if not error <= 1e-3:
        return f"{what} disagrees with the exact activation (relative error {error:.2g})"
    return ""


SPECTRAL_MIN_TAPS = 7  # kernel 3 saves too little (1.6x fewer products at 3.7x the memory; measured no faster)
SPECTRAL_MIN_CHANNELS = 192  # at 96 channels the transforms cost more than the products save (measured, 2 threads)
SPECTRAL_BLOCKS = (32, 16)  # longer blocks save more products (k = 11: 2.1 vs 3.8 per output, n = 32 vs 16) ...
SPECTRAL_MAX_BYTES = 32 << 20  # ... but their spectra grow: the longest block whose spectra fit this, per conv


def spectral_block(conv: nn.Conv1d) -> int | None:
    """The overlap-save block for one residual convolution, or None where the direct convolution is as fast."""
    if conv.kernel_size[0] < SPECTRAL_MIN_TAPS or conv.in_channels < SPECTRAL_MIN_CHANNELS:
        return None
    fits = [block for block in SPECTRAL_BLOCKS
            if 4 * spectral_conv.spectral_rows(block) * conv.in_channels * conv.out_channels <= SPECTRAL_MAX_BYTES]
    return fits[0] if fits else SPECTRAL_BLOCKS[-1]


class ResBlock(Protocol):
    """bigvgan's `AMPBlock1` / `AMPBlock2` as read here: its lists of residual convolutions."""

    convs1: nn.ModuleList
    convs2: nn.ModuleList


def use_spectral_convs(vocoder: nn.Module) -> int:
    """Swap the residual blocks' large convolutions for `SpectralConv1d` (CPU); returns how many were swapped."""
    if not spectral_conv.available():
        return 0
    swapped = 0
    # cast: bigvgan's BigVGAN publishes no type information; its `resblocks` is an nn.ModuleList of AMP blocks
    for resblock in cast(Iterable[ResBlock], vocoder.resblocks):
        for convs in (resblock.convs1, resblock.convs2):
            for i, conv in enumerate(convs):
                if not isinstance(conv, nn.Conv1d):  # bigvgan's are all Conv1d (weight norm folded or not)
                    continue
                block = spectral_block(conv)
                if block is not None:
                    convs[i] = spectral_conv.SpectralConv1d(conv, block)
                    swapped += 1
    return swapped


def accelerate(vocoder: nn.Module, device: torch.device) -> str:
    """Pick the fastest activation path for `device` (and on the CPU the spectral convolutions); returns its name."""
    if device.type == "cuda":
        why_not = use_triton_kernel(vocoder)
        if not why_not:
            return PATH_TRITON
        log.warning("BigVGAN: %s; trying bigvgan's CUDA kernel", why_not)
        why_not = use_cuda_kernel(vocoder)
        if not why_not:
            return PATH_CUDA_KERNEL
        log.warning("BigVGAN: %s; using bigvgan's PyTorch activations", why_not)
        return PATH_TORCH
    use_spectral_convs(vocoder)
    library, why_not = cpu_kernel(vocoder)
    if why_not:
        log.warning("BigVGAN: %s; using the PyTorch polyphase activations", why_not)
    if not use_polyphase(vocoder, library):
        return PATH_TORCH
    return PATH_POLYPHASE if library is None else PATH_CPU_KERNEL

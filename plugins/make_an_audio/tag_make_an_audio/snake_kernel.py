"""bigvgan's fused anti-aliased snake CUDA kernel, built for the GPU the worker has.

bigvgan's own loader compiles the kernel for sm_70 and sm_80 only. nvcc 13 (the CUDA of torch 2.11 wheels) no
longer targets sm_70, so that build fails, and sm_80 machine code would not launch on Hopper (sm_90) anyway.
The kernel's sources ship inside the bigvgan package; `build` compiles them with torch's extension loader for
the current device's compute capability only, into torch's extensions cache (TORCH_EXTENSIONS_DIR, by default
~/.cache/torch_extensions): the first worker on a machine pays the compile (tens of seconds), later starts load
the cached library.

The kernel computes what bigvgan's `Activation1d` does (2x upsample with 12 taps and replicate padding, snake,
2x downsample) in one launch, with alpha and beta given as logarithms. Built without fast math it agrees with the
PyTorch path to float rounding, not bitwise (vocoder.use_cuda_kernel checks that on the worker).
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

# bigvgan's own nvcc flags, less its fixed architecture list (sm_70 / sm_80) and --use_fast_math, whose
# approximate sin / exp put the output 3e-3 (relative to its peak) away from the PyTorch path on an H100
CUDA_FLAGS = ["-O3", "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
              "--expt-relaxed-constexpr", "--expt-extended-lambda"]


class Snake(Protocol):
    """bigvgan's `Snake` / `SnakeBeta` as read here (bigvgan publishes no type information); SnakeBeta adds `beta`."""

    alpha: torch.Tensor
    alpha_logscale: bool


class UpSample(Protocol):
    """bigvgan's `UpSample1d`: a transposed convolution by `ratio` with `filter`, replicate-padded."""

    ratio: int
    filter: torch.Tensor


class LowPass(Protocol):
    """bigvgan's `LowPassFilter1d`."""

    filter: torch.Tensor
    padding: bool
    padding_mode: str


class DownSample(Protocol):
    """bigvgan's `DownSample1d`: `lowpass` strided by `ratio`."""

    ratio: int
    lowpass: LowPass


class Activation(Protocol):
    """The parts of bigvgan's torch `Activation1d` (upsample -> snake -> downsample) its replacements read."""

    act: Snake
    upsample: UpSample
    downsample: DownSample


class Kernel(Protocol):
    """The compiled extension: forward(x, up_filter, down_filter, log_alpha, log_beta) -> activated x."""

    def forward(self, x: torch.Tensor, up_filter: torch.Tensor, down_filter: torch.Tensor, log_alpha: torch.Tensor,
                log_beta: torch.Tensor) -> torch.Tensor: ...


def sources() -> list[Path]:
    import bigvgan

    folder = Path(bigvgan.__file__).resolve().parent / "alias_free_activation" / "cuda"
    return [folder / "anti_alias_activation.cpp", folder / "anti_alias_activation_cuda.cu"]


def build(device: torch.device) -> Kernel:
    """Compile (or load the cached build of) the kernel for `device`'s architecture."""
    from torch.utils import cpp_extension

    major, minor = torch.cuda.get_device_capability(device)
    arch = f"{major}{minor}"
    with contextlib.redirect_stdout(io.StringIO()):  # ninja's progress lines
        return cpp_extension.load(
            name=f"tag_bigvgan_snake_precise_sm{arch}",
            sources=[str(path) for path in sources()],
            extra_cflags=["-O3"],
            extra_cuda_cflags=CUDA_FLAGS + ["-gencode", f"arch=compute_{arch},code=sm_{arch}"],
            verbose=False,
        )


class FusedSnake(nn.Module):
    """One bigvgan `Activation1d` (12 taps, ratio 2) computed by the fused kernel."""

    def __init__(self, kernel: Kernel, module: Activation) -> None:
        super().__init__()
        act = module.act
        alpha = act.alpha.detach()
        beta = act.beta.detach() if hasattr(act, "beta") else alpha  # Snake divides by alpha itself
        if not act.alpha_logscale:  # the kernel exponentiates what it is given
            alpha, beta = alpha.log(), beta.log()
        self.kernel = kernel
        self.up_filter = nn.Buffer(module.upsample.filter.detach(), persistent=False)
        self.down_filter = nn.Buffer(module.downsample.lowpass.filter.detach(), persistent=False)
        self.log_alpha = nn.Buffer(alpha.clone(), persistent=False)
        self.log_beta = nn.Buffer(beta.clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.kernel.forward(x.contiguous(), self.up_filter, self.down_filter, self.log_alpha, self.log_beta)


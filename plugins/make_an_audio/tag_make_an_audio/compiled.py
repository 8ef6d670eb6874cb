"""The UNet under torch.compile, whole or block by block (the backend's `compile` and `compile_scope` options).

`unet`: one graph for the whole network, the way the H100 speed results were measured (bf16, 10 s clip: a guided
call in 2.0 ms at batch 1 and 5.7-7.1 ms at batch 8, against 3.4 / 9.2 ms replayed uncompiled). Its price is the
warm-up: about 50-60 s per new (batch, length) on that GPU until torch makes the changed size dynamic.

`blocks`: each ResNet block and each spatial transformer is compiled on its own ("regional compilation"). The 23
blocks have 9 distinct weight shapes, so torch traces and lowers 9 small graphs instead of one large one, and the
sizes that differ between blocks of the same kind (height, width) become dynamic during the first compile, so
later clip lengths and batch sizes mostly reuse the kernels. What stays eager is the glue between blocks
(timestep embedding, input / output convolutions, up- and downsampling, skip concatenations). On the CPU (full
size, fp32, 2 cores; benchmarks/results/make_an_audio_compile_cpu.md) the warm-up for 10 s x 1, 10 s x 8 and 5 s x 1
took 82 s against 147 s for the whole UNet (the 5 s clip: 3 s against 54 s), and 30 s against 36 s after a restart.
Its call time on the GPU, which decides between the two, is for benchmarks/make_an_audio_gpu.sh (STAGES=scopes).

Both keep torch's compile caches out of /tmp (see `compile_unet`) and run the UNet channels-last: compiled, that
layout measured 5.7 ms a call at batch 8 where NCHW took 7.1 (different runs); eager it is slower, so only here.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, TypeVar, cast

from tagcore.config import cache_dir

if TYPE_CHECKING:  # torch is imported when a worker compiles, not when the backend's options are listed
    from torch import nn

SCOPES = ("unet", "blocks")
BLOCK_TYPES = ("ResnetBlock2D", "Transformer2DModel")  # diffusers' classes of the repeated blocks
# Every block of a kind shares one code object, hence one dynamo cache: 7 ResNet weight shapes, each compiled once
# static and again once the batch turns dynamic, make up to 14 entries, past torch's default limit of 8 (beyond it a
# block would silently run eagerly). 64 leaves room for the further batch buckets and lengths a worker meets.
RECOMPILE_LIMIT = 64

M = TypeVar("M", bound="nn.Module")


def compile_unet(unet: M, scope: str) -> M:
    """`unet`, channels-last, compiled over `scope` (one of SCOPES); returns what the model should call.

    torch keeps its compile caches in /tmp by default, which a service with a private /tmp (systemd's PrivateTmp)
    loses at every restart: they go under TAG's cache unless TORCHINDUCTOR_CACHE_DIR says otherwise, so a
    restarted worker loads its kernels instead of compiling them again.
    """
    import torch

    if scope not in SCOPES:
        raise ValueError(f"compile scope {scope!r} is not one of {', '.join(SCOPES)}")
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "torchinductor"))
    unet.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # accepted at run time; not in the stub
    if scope == "unet":
        # torch.compile of a module is an OptimizedModule that forwards every attribute (config, ...) to `unet`
        return cast("M", torch.compile(unet))
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    for block in unet.modules():
        if type(block).__name__ in BLOCK_TYPES:
            block.compile()
    return unet

"""Small bigvgan models with non-trivial snake parameters, for the vocoder's fast paths to be checked against."""
from __future__ import annotations

import contextlib
import dataclasses
import io

import torch
from bigvgan.activations import Snake, SnakeBeta
from bigvgan.alias_free_activation.torch.act import Activation1d

from tag_testkit.make_an_audio_tiny import TINY, vocoder_args


def snake_activation(kind: type, channels: int, logscale: bool, seed: int) -> Activation1d:
    """bigvgan's anti-aliased `kind` activation with seeded random parameters around their usual scale."""
    module = Activation1d(kind(channels, alpha_logscale=logscale))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.act.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3 + (0.0 if logscale else 1.0))
    return module.eval()


def tiny_bigvgan(kernels: tuple[int, ...] = (3,)) -> torch.nn.Module:
    """The tiny test vocoder (weight norm folded, as loading does) with random snake parameters."""
    from bigvgan import BigVGAN
    from bigvgan.env import AttrDict

    torch.manual_seed(0)
    args = vocoder_args(dataclasses.replace(TINY, vocoder_kernels=kernels))
    model = BigVGAN(AttrDict(args), use_cuda_kernel=False).eval()
    for module in model.modules():  # give the snakes non-trivial parameters
        if isinstance(module, (Snake, SnakeBeta)):
            with torch.no_grad():
                for p in module.parameters():
                    p.normal_(0.0, 0.3)
    with contextlib.redirect_stdout(io.StringIO()):
        model.remove_weight_norm()  # as loading does (weight norm also blocks deepcopy)
    return model

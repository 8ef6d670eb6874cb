"""Stages: how a request runs Make-An-Audio's pipeline (text encoder, sampling loop, VAE, vocoder), chosen once.

A backend picks its stages when it loads: `EagerStages` (every device; op by op) or `graphs.GraphSampler` (CUDA;
each stage replayed from captured CUDA graphs). A request then calls the same four methods either way, as
audiogen's decode loop calls its `Steps`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

    from .model import MakeAnAudio
    from .sampler import StepHook


class Stages(Protocol):
    """The pipeline's stages. A returned tensor may be a graph's output buffer: use it before the next call."""

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """(len(prompts), 77, context_dim) conditioning, owned by the caller."""
        ...

    def sample(self, noise: torch.Tensor, c: torch.Tensor, uc: torch.Tensor, *, steps: int, guidance: float,
               sampler: str, hook: StepHook | None = None) -> tuple[torch.Tensor, float]:
        """(clean latents fp32, seconds this call spent capturing graphs) for start `noise`."""
        ...

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> log10 mel spectrogram."""
        ...

    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        """Mel -> waveform in [-1, 1]."""
        ...


class EagerStages:
    """The model's own stages, op by op (the CPU path, and CUDA with cuda_graphs off)."""

    def __init__(self, model: MakeAnAudio) -> None:
        self.model = model

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.model.encode_text(prompts)

    def sample(self, noise: torch.Tensor, c: torch.Tensor, uc: torch.Tensor, *, steps: int, guidance: float,
               sampler: str, hook: StepHook | None = None) -> tuple[torch.Tensor, float]:
        return self.model.sample(noise, c, uc, steps=steps, guidance=guidance, sampler=sampler, hook=hook), 0.0

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z)

    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        return self.model.vocode(mel)

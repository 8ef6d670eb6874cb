"""Samplers over the model's 1000-step linear-beta schedule: the official DDIM (eta 0) and DPM-Solver++.

DDIM is written out here because the official step list differs from diffusers' for step counts that do not
divide 1000 (S=30 gives 31 steps) and its last step uses alphas_cumprod[0] as "previous" (not 1.0). It also
draws one unused normal sample per step from the global CPU generator, as the official sampler does, so the
generator state after a run matches the official code for every seed.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

EpsFn = Callable[[torch.Tensor, int], torch.Tensor]
"""(x, t) -> guided noise prediction, fp32, same shape as x."""
StepHook = Callable[[int, int, torch.Tensor, torch.Tensor | None], None]
"""(step index, total steps, x after the step, predicted x0 or None)."""


@dataclass(frozen=True)
class DDIMTables:
    """Per-step constants, in ascending timestep order (the official `ddim_*` buffers)."""

    timesteps: list[int]
    alphas: torch.Tensor
    alphas_prev: torch.Tensor
    sqrt_one_minus_alphas: torch.Tensor


def ddim_tables(alphas_cumprod: torch.Tensor, steps: int) -> DDIMTables:
    """Official 'uniform' DDIM discretisation: range(0, T, T // S) + 1.

    Timesteps past the schedule (S=3 or S=9 give t=1000, which crashes the official code) are dropped.
    """
    total = alphas_cumprod.shape[0]
    if not 1 <= steps <= total:
        raise ValueError(f"steps must be between 1 and {total}")
    timesteps = [t + 1 for t in range(0, total, total // steps) if t + 1 < total]
    ac = alphas_cumprod.detach().to("cpu", torch.float32)
    alphas = ac[timesteps]
    alphas_prev = torch.cat([ac[:1], ac[timesteps[:-1]]])
    return DDIMTables(timesteps, alphas, alphas_prev, torch.sqrt(1.0 - alphas))


def ddim_sample(x: torch.Tensor, eps_fn: EpsFn, tables: DDIMTables, hook: StepHook | None = None) -> torch.Tensor:
    """Deterministic DDIM (eta 0) from noise `x` (fp32) down to the clean latent."""
    n = len(tables.timesteps)
    alphas, alphas_prev = tables.alphas.to(x.device), tables.alphas_prev.to(x.device)
    sqrt_one_minus = tables.sqrt_one_minus_alphas.to(x.device)
    for i, index in enumerate(reversed(range(n))):
        e = eps_fn(x, tables.timesteps[index])
        a_t, a_prev = alphas[index], alphas_prev[index]
        pred_x0 = (x - sqrt_one_minus[index] * e) / a_t.sqrt()
        x = a_prev.sqrt() * pred_x0 + (1.0 - a_prev).sqrt() * e
        torch.randn(x.shape)  # the official sampler's eta-0 noise term: value unused, generator advanced
        if hook is not None:
            hook(i, n, x, pred_x0)
    return x


def dpmpp_sample(x: torch.Tensor, eps_fn: EpsFn, betas: torch.Tensor, steps: int,
                 hook: StepHook | None = None) -> torch.Tensor:
    """Second-order multistep DPM-Solver++ (diffusers) on the checkpoint's own betas: good audio in 20-25 steps."""
    from diffusers import DPMSolverMultistepScheduler

    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=int(betas.shape[0]),
        trained_betas=betas.detach().to("cpu", torch.float64).numpy(),
        algorithm_type="dpmsolver++",
        solver_order=2,
        prediction_type="epsilon",
        timestep_spacing="leading",
        steps_offset=1,
    )
    scheduler.set_timesteps(steps, device=x.device)
    n = len(scheduler.timesteps)
    for i, t in enumerate(scheduler.timesteps):
        e = eps_fn(x, int(t))
        x = scheduler.step(e, t, x).prev_sample
        if hook is not None:
            hook(i, n, x, None)
    return x

"""Samplers over the model's 1000-step linear-beta schedule: the official DDIM (eta 0) and DPM-Solver++ 2M.

Both are one loop over per-step constants held as tensors (a `Plan`), so the same code runs eagerly (CPU, or
CUDA without graphs) and inside captured CUDA graphs (graphs.py): a step reads its timestep and coefficients
from the tables at a device-side step index, and nothing in it reads a value back to the host. Every step is

    e = eps(x, t);  x0 = (x - sigma * e) / alpha;  x <- c_x0 * x0 + c_e * e + c_x * x + c_prev * x0_prev

DDIM is written out here because the official step list differs from diffusers' for step counts that do not
divide 1000 (S=30 gives 31 steps) and its last step uses alphas_cumprod[0] as "previous" (not 1.0); its
c_x = c_prev = 0 terms add exact zeros, so it computes what the official sampler computes. The official sampler
also draws one unused normal sample per step from the global CPU generator; `sample` draws them too (between
chunks of steps), so the generator state after a run matches the official code for every seed. DPM-Solver++ is
diffusers' DPMSolverMultistepScheduler (dpmsolver++, order 2, "leading" spacing, last step first order),
its coefficients computed here once per plan in float64.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(x, t) -> guided noise prediction, fp32, same shape as x; t is a (1,) int64 tensor on x's device."""
StepHook = Callable[[int, int, torch.Tensor, torch.Tensor | None], None]
"""(index of the last step done, total steps, x after it, its predicted x0); x and x0 are live buffers."""
ChunkRunner = Callable[[int], None]
"""Runs the next `k` steps of a started loop (eagerly, or by replaying a captured graph)."""

COEFFICIENTS = ("sigma", "alpha", "c_x0", "c_e", "c_x", "c_prev")


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


@dataclass(frozen=True)
class Plan:
    """One sampler's steps in the order they run: timesteps (n,) int64 and coefficients (n, 6) float32."""

    sampler: str
    timesteps: torch.Tensor
    coefficients: torch.Tensor
    draws_noise: bool  # the official DDIM advances the global CPU generator once per step

    @property
    def steps(self) -> int:
        return int(self.timesteps.shape[0])

    def to(self, device: torch.device) -> Plan:
        return Plan(self.sampler, self.timesteps.to(device), self.coefficients.to(device), self.draws_noise)


def ddim_plan(alphas_cumprod: torch.Tensor, steps: int) -> Plan:
    """The official DDIM (eta 0), highest timestep first; fp32 constants computed as the official code does."""
    tables = ddim_tables(alphas_cumprod, steps)
    order = list(reversed(range(len(tables.timesteps))))
    a_t, a_prev = tables.alphas[order], tables.alphas_prev[order]
    zero = torch.zeros_like(a_t)
    coefficients = torch.stack([tables.sqrt_one_minus_alphas[order], a_t.sqrt(), a_prev.sqrt(),
                                (1.0 - a_prev).sqrt(), zero, zero], 1)
    return Plan("ddim", torch.tensor([tables.timesteps[i] for i in order]), coefficients, True)


def dpmpp_plan(betas: torch.Tensor, steps: int) -> Plan:
    """DPM-Solver++ 2M as diffusers runs it on the checkpoint's own betas: good audio in 20-25 steps."""
    from diffusers.schedulers.scheduling_dpmsolver_multistep import DPMSolverMultistepScheduler

    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=int(betas.shape[0]),
        trained_betas=betas.detach().to("cpu", torch.float64).numpy(),
        algorithm_type="dpmsolver++",
        solver_order=2,
        prediction_type="epsilon",
        timestep_spacing="leading",
        steps_offset=1,
    )
    scheduler.set_timesteps(steps)
    sigmas = scheduler.sigmas.double().tolist()  # n + 1 values, the last 0 (final_sigmas_type "zero")
    n = len(scheduler.timesteps)

    def alpha_sigma(sigma: float) -> tuple[float, float, float]:
        alpha = 1.0 / math.sqrt(sigma * sigma + 1.0)
        vp_sigma = sigma * alpha
        log_snr = math.log(alpha) - math.log(vp_sigma) if vp_sigma > 0 else math.inf
        return alpha, vp_sigma, log_snr

    rows = []
    for i in range(n):
        alpha_s, sigma_s, lambda_s = alpha_sigma(sigmas[i])
        alpha_t, sigma_t, lambda_t = alpha_sigma(sigmas[i + 1])
        h = lambda_t - lambda_s
        decay = math.expm1(-h) if math.isfinite(h) else -1.0  # exp(-h) - 1
        if i == 0 or i == n - 1:  # first order: diffusers' warm start and its last step
            c_x0, c_prev = -alpha_t * decay, 0.0
        else:  # second-order midpoint update with the previous data prediction
            _, _, lambda_prev = alpha_sigma(sigmas[i - 1])
            r0 = (lambda_s - lambda_prev) / h
            c_x0, c_prev = -alpha_t * decay * (1.0 + 0.5 / r0), 0.5 * alpha_t * decay / r0
        rows.append([sigma_s, alpha_s, c_x0, 0.0, sigma_t / sigma_s, c_prev])
    coefficients = torch.tensor(rows, dtype=torch.float64).float()
    return Plan("dpmpp", scheduler.timesteps.to(torch.int64).clone(), coefficients, False)


def make_plan(sampler: str, alphas_cumprod: torch.Tensor, betas: torch.Tensor, steps: int) -> Plan:
    if sampler == "ddim":
        return ddim_plan(alphas_cumprod, steps)
    if sampler == "dpmpp":
        return dpmpp_plan(betas, steps)
    raise ValueError(f"unknown sampler {sampler!r}")


class Loop:
    """The state of one sampling run in fixed buffers: x, the latest and previous x0, and the step index."""

    def __init__(self, plan: Plan, eps: EpsFn, x: torch.Tensor) -> None:
        self.plan, self.eps = plan, eps
        self.x = x
        self.x0 = torch.zeros_like(x)
        self.x0_prev = torch.zeros_like(x)
        self.index = torch.zeros(1, dtype=torch.long, device=x.device)

    def restart(self, noise: torch.Tensor) -> None:
        """Start again from `noise` (copied into the buffers, so captured graphs see it)."""
        self.x.copy_(noise)
        self.x0_prev.zero_()
        self.index.zero_()

    def advance(self, k: int) -> None:
        """Run the next `k` steps in place. Tensor ops only: capturable as a CUDA graph."""
        for _ in range(k):
            t = self.plan.timesteps.index_select(0, self.index)
            sigma, alpha, c_x0, c_e, c_x, c_prev = self.plan.coefficients.index_select(0, self.index)[0].unbind()
            e = self.eps(self.x, t)
            x0 = (self.x - sigma * e) / alpha
            x = c_x0 * x0 + c_e * e + c_x * self.x + c_prev * self.x0_prev
            self.x0_prev.copy_(x0)
            self.x0.copy_(x0)
            self.x.copy_(x)
            self.index += 1


def sample(x: torch.Tensor, eps: EpsFn, plan: Plan, hook: StepHook | None = None, chunk: int = 1,
           runner: Callable[[Loop], ChunkRunner] | None = None, loop: Loop | None = None,
           rows: int | None = None) -> torch.Tensor:
    """Sample from noise `x` (fp32) down to the clean latent, `chunk` steps at a time.

    `hook` is called after every chunk (with chunk 1: every step). `runner` turns the loop into something that
    runs k steps (default: eagerly); `loop` reuses a loop whose buffers a captured graph reads. `rows`: how many
    leading rows of `x` are real samples (the rest pad a captured batch size; the generator draws skip them).
    """
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    n = plan.steps
    if loop is None:
        loop = Loop(plan, eps, x.clone())
    else:
        loop.restart(x)
    run = runner(loop) if runner is not None else loop.advance
    draw_shape = (x.shape[0] if rows is None else rows, *x.shape[1:])
    done = 0
    while done < n:
        k = min(chunk, n - done)
        run(k)
        if plan.draws_noise:
            for _ in range(k):
                torch.randn(draw_shape)  # the official sampler's eta-0 noise term: value unused, generator advanced
        done += k
        if hook is not None:
            hook(done - 1, n, loop.x, loop.x0)
    return loop.x.clone()

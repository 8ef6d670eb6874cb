"""The tensor-table sampling loop (the one CUDA graphs replay) against straightforward loops, on the CPU."""
from __future__ import annotations

import torch

from tag_make_an_audio.sampler import ddim_plan, ddim_tables, dpmpp_plan, sample

ALPHAS_CUMPROD = torch.cumprod(1 - torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2, 0)
BETAS = 1 - ALPHAS_CUMPROD / torch.cat([torch.ones(1, dtype=torch.float64), ALPHAS_CUMPROD[:-1]])


def toy_eps(x: torch.Tensor, t) -> torch.Tensor:
    """A deterministic stand-in for the guided UNet: nonlinear in x, depends on t."""
    t = float(t.item() if isinstance(t, torch.Tensor) else t)
    return torch.tanh(0.7 * x + 0.001 * t) + 0.1 * torch.sin(x * (t / 500.0))


def reference_ddim(x: torch.Tensor, steps: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The official DDIM update written out step by step (the loop this project shipped before)."""
    tables = ddim_tables(ALPHAS_CUMPROD.float(), steps)
    xs = []
    for index in reversed(range(len(tables.timesteps))):
        e = toy_eps(x, tables.timesteps[index])
        a_t, a_prev = tables.alphas[index], tables.alphas_prev[index]
        pred_x0 = (x - tables.sqrt_one_minus_alphas[index] * e) / a_t.sqrt()
        x = a_prev.sqrt() * pred_x0 + (1.0 - a_prev).sqrt() * e
        torch.randn(x.shape)
        xs.append(x)
    return x, xs


def test_ddim_loop_computes_exactly_the_stepwise_official_update():
    noise = torch.randn(2, 4, 10, 8, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(3)
    want, want_steps = reference_ddim(noise.clone(), 10)
    after_reference = torch.rand(4)
    seen = []
    torch.manual_seed(3)
    got = sample(noise, toy_eps, ddim_plan(ALPHAS_CUMPROD.float(), 10), hook=lambda i, n, x, x0: seen.append(x.clone()))
    assert torch.equal(got, want)
    assert all(torch.equal(a, b) for a, b in zip(seen, want_steps)) and len(seen) == 10
    assert torch.equal(torch.rand(4), after_reference)  # the generator advanced once per step, as before


def test_chunks_compute_the_same_and_report_between_chunks():
    noise = torch.randn(1, 4, 10, 8, generator=torch.Generator().manual_seed(1))
    for plan in (ddim_plan(ALPHAS_CUMPROD.float(), 10), dpmpp_plan(BETAS, 10)):
        torch.manual_seed(0)
        stepwise = sample(noise, toy_eps, plan)
        after_stepwise = torch.rand(2)
        calls = []
        torch.manual_seed(0)
        chunked = sample(noise, toy_eps, plan, hook=lambda i, n, x, x0: calls.append((i, n)), chunk=4)
        assert torch.equal(chunked, stepwise)
        assert calls == [(3, 10), (7, 10), (9, 10)]  # after each chunk of 4 (the last one shorter)
        assert torch.equal(torch.rand(2), after_stepwise)


def test_dpmpp_plan_matches_diffusers_scheduler():
    from diffusers import DPMSolverMultistepScheduler

    for steps in (1, 2, 5, 25):
        scheduler = DPMSolverMultistepScheduler(
            num_train_timesteps=1000, trained_betas=BETAS.numpy(), algorithm_type="dpmsolver++", solver_order=2,
            prediction_type="epsilon", timestep_spacing="leading", steps_offset=1)
        scheduler.set_timesteps(steps)
        x = torch.randn(1, 4, 10, 8, generator=torch.Generator().manual_seed(2))
        plan = dpmpp_plan(BETAS, steps)
        assert plan.timesteps.tolist() == scheduler.timesteps.tolist()
        want = x.clone()
        for t in scheduler.timesteps:
            want = scheduler.step(toy_eps(want, int(t)), t, want).prev_sample
        got = sample(x, toy_eps, plan)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_padding_rows_do_not_change_the_generator_draws():
    """A batch padded up to a captured size draws the official per-step noise for its real rows only."""
    noise = torch.randn(4, 4, 10, 8, generator=torch.Generator().manual_seed(4))
    torch.manual_seed(9)
    padded = sample(noise, toy_eps, ddim_plan(ALPHAS_CUMPROD.float(), 5), rows=3)
    after = torch.rand(2)
    torch.manual_seed(9)
    for _ in range(5):
        torch.randn(3, 4, 10, 8)
    assert torch.equal(torch.rand(2), after)
    torch.manual_seed(9)
    assert torch.equal(padded[:3], sample(noise[:3], toy_eps, ddim_plan(ALPHAS_CUMPROD.float(), 5)))

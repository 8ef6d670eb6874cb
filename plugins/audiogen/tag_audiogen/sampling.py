"""Per-row random generators for audiocraft's token sampling, so a batched clip is reproducible from its own seed.

audiocraft draws every token of a batch from torch's global generator in one `torch.multinomial` call, so what a
row gets depends on the other rows. While `row_generators(...)` is active, the draw for row b instead comes from a
`torch.Generator` seeded with that row's seed. A generator seeded with s yields exactly the stream the global
generator yields after `torch.manual_seed(s)`, so row b equals a single-prompt audiocraft call made right after
`torch.manual_seed(s_b)`, provided the model's arithmetic for a row does not depend on the batch (checked by tests).

Our own decode loop (`decode_loop`, `decoder=tag`) needs no patching: it passes each row's generator explicitly
to `draw`, after `distribution` has computed audiocraft's sampling distribution with audiocraft's operations.
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

_generators: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar("tag_audiogen_generators", default=None)
_installed = False


def _install() -> None:
    """Wrap audiocraft's `multinomial` once; outside `row_generators` it behaves exactly like the original."""
    global _installed
    if _installed:
        return
    import torch
    from audiocraft.utils import utils

    original = utils.multinomial

    def multinomial(input: torch.Tensor, num_samples: int, replacement: bool = False, *, generator: Any = None):
        generators = _generators.get()
        if generators is None or generator is not None or input.dim() < 2 or input.shape[0] != len(generators):
            return original(input, num_samples, replacement, generator=generator)
        rows = [original(input[b:b + 1], num_samples, replacement, generator=gen)
                for b, gen in enumerate(generators)]
        return torch.cat(rows, dim=0)

    # sample_top_k / sample_top_p look `multinomial` up in the module globals; lm.py calls utils.multinomial.
    utils.multinomial = multinomial
    _installed = True


@contextlib.contextmanager
def row_generators(seeds: Sequence[int], device: Any) -> Iterator[None]:
    """Sample row b of every batch from its own generator seeded with `seeds[b]`."""
    import torch

    _install()
    generators = [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]
    token = _generators.set(generators)
    try:
        yield
    finally:
        _generators.reset(token)


@dataclass(frozen=True)
class SamplingParams:
    """audiocraft's generation parameters (`LMModel.generate`), with its meaning of each."""

    use_sampling: bool = True
    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 0.0
    cfg_coef: float = 3.0

    @property
    def greedy(self) -> bool:
        """audiocraft takes the argmax of the logits when sampling is off or the temperature is 0."""
        return not self.use_sampling or self.temperature <= 0.0


def distribution(logits: Any, params: SamplingParams) -> tuple[Any, Any]:
    """What to draw the next tokens from, given CFG-combined logits [B, K, card]: deterministic, so a CUDA graph
    may compute it. Returns (weights, order): greedy: (tokens [B, K, 1], None); top-p: (sorted probabilities,
    their token ids); otherwise (probabilities, None). Same operations as audiocraft's `_sample_next_token`,
    `sample_top_k` and `sample_top_p`, so the same values."""
    import torch

    if params.greedy:
        return torch.argmax(logits, dim=-1, keepdim=True), None
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p > 0.0:
        probs_sort, probs_idx = torch.sort(probs, dim=-1, descending=True)
        probs_sum = torch.cumsum(probs_sort, dim=-1)
        mask = probs_sum - probs_sort > params.top_p
        probs_sort = probs_sort * (~mask).float()
        return probs_sort / probs_sort.sum(dim=-1, keepdim=True), probs_idx
    if params.top_k > 0:
        top_k_value, _ = torch.topk(probs, params.top_k, dim=-1)
        # A slice, not audiocraft's `[..., [-1]]` (same values): list indexing copies the index from host memory,
        # which a CUDA graph cannot capture.
        probs = probs * (probs >= top_k_value[..., -1:]).float()
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs, None


def draw(weights: Any, order: Any, generators: Sequence[Any], params: SamplingParams) -> Any:
    """Next tokens [B, K, 1] from `distribution`'s output: row b draws from `generators[b]` with the same
    `torch.multinomial` call audiocraft makes for a batch of one, so it gets the same tokens for the same seed."""
    import torch

    if params.greedy:
        return weights
    card = weights.shape[-1]
    tokens = torch.stack([torch.multinomial(weights[b].reshape(-1, card), num_samples=1, generator=generator)
                          for b, generator in enumerate(generators)])
    return tokens if order is None else torch.gather(order, -1, tokens)

"""Per-row random generators for audiocraft's token sampling, so a batched clip is reproducible from its own seed.

audiocraft draws every token of a batch from torch's global generator in one `torch.multinomial` call, so what a
row gets depends on the other rows. While `row_generators(...)` is active, the draw for row b instead comes from a
`torch.Generator` seeded with that row's seed. A generator seeded with s yields exactly the stream the global
generator yields after `torch.manual_seed(s)`, so row b equals a single-prompt audiocraft call made right after
`torch.manual_seed(s_b)`, provided the model's arithmetic for a row does not depend on the batch (checked by tests).
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
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

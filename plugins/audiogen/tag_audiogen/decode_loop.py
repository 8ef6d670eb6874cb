"""Token generation for AudioGen/MusicGen with our own step (`decoder.StaticLM`) and audiocraft's semantics.

This mirrors, decision for decision, `LMModel.generate` (conditioning with the null condition for CFG, the
codebook pattern, teacher-forced prompt tokens, masking of invalid pattern positions) and
`BaseGenModel._generate_tokens` (windowed extension beyond the model's window, keeping the last
window - extend_stride seconds as the next window's prompt), and uses audiocraft's own pattern objects and
conditioners, so the same seed gives the same tokens. What differs is how a step runs: a `Steps` object owns the
cache and runs the transformer (eagerly here; `cuda_graphs.GraphSteps` replays captured CUDA graphs).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from .decoder import KVCache, StaticLM
from .sampling import SamplingParams, distribution, draw

UNKNOWN_TOKEN = -1
"""audiocraft's marker for pattern positions not generated yet."""

Progress = Callable[[int, int], None]
"""(tokens generated so far, tokens of the current window), like audiocraft's progress callback."""


class Steps(Protocol):
    """Runs the transformer for one window: `begin` sets up the cache, then `prefill` once and `step` per token.
    Both return `sampling.distribution`'s (weights, order) for the last position."""

    def begin(self, text: TextConditioning | None, batch: int, length: int) -> None: ...

    def prefill(self, tokens: torch.Tensor) -> tuple[Any, Any]: ...

    def step(self, tokens: torch.Tensor, position: int) -> tuple[Any, Any]: ...


def guided(logits: torch.Tensor, batch: int, cfg_coef: float) -> torch.Tensor:
    """Classifier-free guidance over [conditional rows; unconditional rows], in audiocraft's operation order."""
    cond, uncond = logits.split(batch, dim=0)
    return uncond + (cond - uncond) * cfg_coef


def causal_mask(length: int, device: torch.device) -> torch.Tensor | None:
    """[length, length] lower-triangular attention mask (None for a single position, which sees everything)."""
    if length == 1:
        return None
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


class EagerSteps:
    """Steps run op by op (the CPU path, and CUDA without graphs): each window gets a cache of its own length."""

    def __init__(self, model: StaticLM, params: SamplingParams, dtype: torch.dtype, device: torch.device) -> None:
        self.model, self.params, self.dtype, self.device = model, params, dtype, device
        self.cache: KVCache | None = None
        self.batch = 0

    def begin(self, text: TextConditioning | None, batch: int, length: int) -> None:
        self.batch = batch
        self.cache = self.model.new_cache(2 * batch, length, self.dtype, self.device)
        if text is not None:
            self.cache.cross_keys, self.cache.cross_values = self.model.cross_keys_values(text.source)
            self.cache.cross_mask = None if text.mask is None else text.mask[:, None, None, :]

    def _run(self, tokens: torch.Tensor, positions: torch.Tensor, visible: int,
             mask: torch.Tensor | None) -> tuple[Any, Any]:
        logits = self.model.forward(self.window_cache(), tokens, positions, visible, mask)
        return distribution(guided(logits, self.batch, self.params.cfg_coef), self.params)

    def window_cache(self) -> KVCache:
        """The cache of the window `begin` opened."""
        if self.cache is None:
            raise RuntimeError("begin() a window before running steps")
        return self.cache

    def prefill(self, tokens: torch.Tensor) -> tuple[Any, Any]:
        length = tokens.shape[-1]
        positions = torch.arange(length, device=self.device)
        return self._run(tokens, positions, length, causal_mask(length, self.device))

    def step(self, tokens: torch.Tensor, position: int) -> tuple[Any, Any]:
        return self._run(tokens, torch.tensor([position], device=self.device), position + 1, None)


@dataclass(frozen=True)
class TextConditioning:
    """The cross-attention input of [conditional rows; unconditional rows]: `source` [2B, T, dim]; `mask` [2B, T]
    marks each row's real keys when the clips' texts have different lengths (None when they all fill T)."""

    source: torch.Tensor
    mask: torch.Tensor | None

    @property
    def length(self) -> int:
        return self.source.shape[1]


def _one_clip_source(lm: Any, attribute: Any) -> torch.Tensor | None:
    """[2, T, dim]: one clip's conditional and null (CFG) cross-attention input, computed exactly as
    `LMModel.generate` computes it for a batch of one (audiocraft's CFG dropout makes the null condition, both are
    tokenized together, then conditioned and fused)."""
    from audiocraft.modules.conditioners import ClassifierFreeGuidanceDropout

    conditions = [attribute] + ClassifierFreeGuidanceDropout(p=1.0)([attribute])
    tensors = lm.condition_provider(lm.condition_provider.tokenize(conditions))
    device = next(iter(lm.parameters())).device
    return lm.fuser(torch.zeros(2, 1, lm.dim, device=device), tensors)[1]


def text_conditioning(lm: Any, attributes: Sequence[Any]) -> TextConditioning | None:
    """Every clip's text conditioning, each computed as if it were alone, then padded to the longest with a key
    mask, so that clips with texts of different token lengths share a batch without changing each other (padding
    the texts together, as audiocraft does, would add keys that change the attention)."""
    computed = [_one_clip_source(lm, attribute) for attribute in attributes]
    per_clip = [source for source in computed if source is not None]
    if len(per_clip) < len(computed):  # a model without text conditioning (it conditions every clip or none)
        return None
    batch, longest = len(per_clip), max(source.shape[1] for source in per_clip)
    source = per_clip[0].new_zeros(2 * batch, longest, per_clip[0].shape[-1])
    mask = torch.zeros(2 * batch, longest, dtype=torch.bool, device=source.device)
    for row, clip in enumerate(per_clip):
        for half in (0, 1):
            source[half * batch + row, :clip.shape[1]] = clip[half]
            mask[half * batch + row, :clip.shape[1]] = True
    return TextConditioning(source, None if bool(mask.all()) else mask)


def window_length(lm: Any, max_gen_len: int) -> int:
    """Pattern sequence steps of a window of `max_gen_len` frames; the cache needs one position fewer."""
    return len(lm.pattern_provider.get_pattern(max_gen_len).layout)


def decode_window(lm: Any, steps: Steps, text: TextConditioning | None, prompt: torch.Tensor | None, batch: int,
                  max_gen_len: int, params: SamplingParams, generators: Sequence[torch.Generator],
                  callback: Progress | None) -> torch.Tensor:
    """`LMModel.generate` for one window: codes [batch, K, max_gen_len], the prompt's first."""
    device = next(iter(lm.parameters())).device
    codebooks, special = lm.num_codebooks, lm.special_token_id
    if prompt is None:
        prompt = torch.zeros((batch, codebooks, 0), dtype=torch.long, device=device)
    prompt_length = prompt.shape[-1]
    pattern = lm.pattern_provider.get_pattern(max_gen_len)
    codes = torch.full((batch, codebooks, max_gen_len), UNKNOWN_TOKEN, dtype=torch.long, device=device)
    codes[..., :prompt_length] = prompt
    sequence, _, mask = pattern.build_pattern_sequence(codes, special)
    start = pattern.get_first_step_with_timesteps(prompt_length)
    total = sequence.shape[-1]
    steps.begin(text, batch, total - 1)
    for offset in range(start, total):
        if offset == start:
            weights, order = steps.prefill(torch.cat([sequence[..., :start]] * 2))
        else:
            weights, order = steps.step(torch.cat([sequence[..., offset - 1:offset]] * 2), offset - 1)
        tokens = draw(weights, order, generators, params)
        tokens = torch.where(mask[None, :, offset:offset + 1], tokens, special)
        current = sequence[..., offset:offset + 1]
        sequence[..., offset:offset + 1] = torch.where(current == UNKNOWN_TOKEN, tokens, current)
        if callback is not None:
            callback(1 + offset - start, total - start)
    if (sequence == UNKNOWN_TOKEN).any():
        raise RuntimeError("the decode loop left pattern positions unfilled")
    out, _, _ = pattern.revert_pattern_sequence(sequence, special_token=UNKNOWN_TOKEN)
    return out[..., :max_gen_len]


def generate_tokens(model: Any, steps: Steps, attributes: Sequence[Any], prompt_tokens: torch.Tensor | None,
                    params: SamplingParams, generators: Sequence[torch.Generator],
                    callback: Progress | None = None) -> torch.Tensor:
    """`BaseGenModel._generate_tokens` of an audiocraft model (its duration, window and extend_stride as set by
    `set_generation_params`) with our decode loop; row b samples from `generators[b]`."""
    lm = model.lm
    frame_rate = model.frame_rate
    total_gen_len = int(model.duration * frame_rate)
    current_gen_offset = 0

    def window_callback(generated: int, window_tokens: int) -> None:
        if callback is not None:
            callback(generated + current_gen_offset, window_tokens)

    with torch.no_grad(), model.autocast:
        text = text_conditioning(lm, attributes)

        def window(prompt: torch.Tensor | None, max_gen_len: int) -> torch.Tensor:
            return decode_window(lm, steps, text, prompt, len(attributes), max_gen_len, params, generators,
                                 window_callback)

        if model.duration <= model.max_duration:
            return window(prompt_tokens, total_gen_len)
        all_tokens = []
        if prompt_tokens is None:
            prompt_length = 0
        else:
            all_tokens.append(prompt_tokens)
            prompt_length = prompt_tokens.shape[-1]
        stride_tokens = int(frame_rate * model.extend_stride)
        while current_gen_offset + prompt_length < total_gen_len:
            time_offset = current_gen_offset / frame_rate
            chunk_duration = min(model.duration - time_offset, model.max_duration)
            gen_tokens = window(prompt_tokens, int(chunk_duration * frame_rate))
            all_tokens.append(gen_tokens if prompt_tokens is None else gen_tokens[:, :, prompt_tokens.shape[-1]:])
            prompt_tokens = gen_tokens[:, :, stride_tokens:]
            prompt_length = prompt_tokens.shape[-1]
            current_gen_offset += stride_tokens
        return torch.cat(all_tokens, dim=-1)


def teacher_forced_logits(model: Any, attributes: Sequence[Any], codes: torch.Tensor,
                          cfg_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """CFG logits of every pattern step of `codes` [1, K, T], [S, K, card]: ours (one step at a time through the
    cache, as the decode loop runs) and audiocraft's (`LMModel.forward` over the whole sequence), to measure how
    closely the two agree (exact arithmetic differs only by rounding)."""
    from audiocraft.modules.conditioners import ClassifierFreeGuidanceDropout

    lm = model.lm
    sequence, _, _ = lm.pattern_provider.get_pattern(codes.shape[-1]).build_pattern_sequence(codes,
                                                                                             lm.special_token_id)
    rows = torch.cat([sequence] * 2)
    device = rows.device
    with torch.no_grad(), model.autocast:
        steps = EagerSteps(StaticLM(lm), SamplingParams(use_sampling=False, cfg_coef=cfg_coef),
                           next(iter(lm.parameters())).dtype, device)
        steps.begin(text_conditioning(lm, attributes), 1, sequence.shape[-1])
        cache = steps.window_cache()
        ours = [guided(steps.model.forward(cache, rows[..., p:p + 1], torch.tensor([p], device=device), p + 1, None),
                       1, cfg_coef)
                for p in range(sequence.shape[-1])]
        conditions = list(attributes) + ClassifierFreeGuidanceDropout(p=1.0)(list(attributes))
        tensors = lm.condition_provider(lm.condition_provider.tokenize(conditions))
        reference = guided(lm(rows, [], condition_tensors=tensors), 1, cfg_coef)
    return torch.cat(ours).float(), reference[0].permute(1, 0, 2).float()

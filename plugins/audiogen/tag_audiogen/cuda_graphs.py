"""Token steps as CUDA graphs, captured once per worker, with the key/value cache planned before it is allocated.

Why: on a GPU a token step of AudioGen-medium is ~1 ms of memory traffic but hundreds of kernel launches from
Python; replaying a captured graph launches them all at once. Graphs need static shapes and addresses, so:

- batches are rounded up to a bucket (1, 2, 4, 8, ...); the extra rows repeat row 0 and are never sampled;
- each bucket owns one cache for the model's whole window, allocated once; a step at position p replays the graph
  of the smallest length bucket (64, 128, 256, ... positions) above p, whose attention reads only that prefix;
- the text's cross-attention keys/values sit in a buffer rounded up to 8, 16, 32, ... keys, with a key mask
  (one per text bucket; all of a batch bucket's share its self-attention cache).

A graph's body is `StaticLM.forward` + guidance + `sampling.distribution`, the very functions the eager path
runs; only the draws (`sampling.draw`, one per row from that row's generator) run outside the graph, as in
audiocraft. The prompt prefill runs eagerly on the same cache. Graphs are kept for the worker's lifetime, keyed
by (batch bucket, text bucket, length bucket, sampling parameters).

Memory: a bucket's cache is `decoder.cache_bytes` for the whole window, known before anything is allocated; a
request whose new bucket would not fit in the free device memory is refused with the numbers (InvalidRequest:
that batch fails, the worker keeps serving) instead of running into a CUDA out-of-memory error.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from tagcore.errors import InvalidRequest

from .decode_loop import TextConditioning, causal_mask, guided
from .decoder import KVCache, StaticLM, cache_bytes
from .sampling import SamplingParams, distribution

FIRST_LENGTH_BUCKET = 64
FIRST_TEXT_BUCKET = 8
HEADROOM = 1.2
"""Cache bytes are multiplied by this to cover a step's activations and the graphs' pool."""


def bucket(value: int, smallest: int = 1) -> int:
    """The smallest power of two times `smallest` that is >= value."""
    size = smallest
    while size < value:
        size *= 2
    return size


@dataclass
class _Buffers:
    """What the graphs of one (batch bucket, text bucket) read and write, at fixed addresses."""

    cache: KVCache
    tokens: torch.Tensor
    """[rows, codebooks, 1] the step's input tokens"""
    position: torch.Tensor
    """[1] the step's position"""


class GraphRunner:
    """All graphs and caches of one loaded model on one CUDA device (lives as long as the worker's model)."""

    def __init__(self, model: StaticLM, window_positions: int, dtype: torch.dtype, device: torch.device,
                 autocast_dtype: torch.dtype | None) -> None:
        self.model, self.dtype, self.device, self.autocast_dtype = model, dtype, device, autocast_dtype
        # Whole multiples of the first bucket, so every attention mask's key length is 16-byte aligned.
        self.length = -(-window_positions // FIRST_LENGTH_BUCKET) * FIRST_LENGTH_BUCKET
        self.capture = device.type == "cuda"
        """False (a CPU device): steps run the graph body eagerly, which lets the CPU tests check the padded,
        bucketed and masked arithmetic the graphs replay."""
        self.self_caches: dict[int, KVCache] = {}
        """Per batch bucket: the self-attention keys/values for the whole window."""
        self.buffers: dict[tuple[int, int], _Buffers] = {}
        """Per (batch bucket, text bucket): that cache, the text's keys/values and the step's inputs."""
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, tuple[Any, Any]]] = {}

    # --- memory ---------------------------------------------------------------------------------------------
    def bytes_needed(self, batch: int, text_length: int) -> int:
        """Device bytes a request of `batch` clips would newly allocate: its batch bucket's self-attention cache
        (shared by all text lengths) unless it exists, its text bucket's cross-attention keys/values unless they
        exist."""
        clips, keys = self._key(batch, text_length)
        if (clips, keys) in self.buffers:
            return 0
        rows, lm = 2 * clips, self.model.lm
        new = cache_bytes(lm, rows, 0, keys, self.dtype)
        if clips not in self.self_caches:
            new += cache_bytes(lm, rows, self.length, 0, self.dtype)
        return int(HEADROOM * new)

    def free_bytes(self) -> int:
        """Device memory this process could still allocate: free on the device plus cached by torch."""
        free, _ = torch.cuda.mem_get_info(self.device)
        return free + torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)

    def largest_batch(self, text_length: int = 64, limit: int = 1024) -> int:
        """The largest batch bucket whose cache (whole window, `text_length` text keys) fits now: the plan the
        worker logs at load."""
        free, size, candidate = self.free_bytes(), 0, 1
        while candidate <= limit and self.bytes_needed(candidate, text_length) <= free:
            size, candidate = candidate, 2 * candidate
        return size

    def check_fits(self, batch: int, text_length: int) -> None:
        """Refuse, with the numbers, a request whose cache would not fit in the device's free memory."""
        needed = self.bytes_needed(batch, text_length)
        if not needed or not self.capture:
            return
        free = self.free_bytes()
        if needed > free:
            raise InvalidRequest(
                f"a batch of {batch} (a cache for {bucket(batch)} clips x {self.length} steps) needs "
                f"{needed / 2**30:.2f} GiB of GPU memory and {free / 2**30:.2f} GiB is free: send fewer prompts "
                f"at once (lower the worker's max_batch)")

    @staticmethod
    def _key(batch: int, text_length: int) -> tuple[int, int]:
        return bucket(batch), bucket(text_length, FIRST_TEXT_BUCKET)

    def _buffers(self, batch: int, text_length: int) -> _Buffers:
        key = self._key(batch, text_length)
        if key not in self.buffers:
            self.check_fits(batch, text_length)
            rows = 2 * key[0]
            if key[0] not in self.self_caches:
                self.self_caches[key[0]] = self.model.new_cache(rows, self.length, self.dtype, self.device)
            shared = self.self_caches[key[0]]
            cache = KVCache(shared.keys, shared.values)
            if self.model.cross:
                shape = (len(self.model.layers), rows, self.model.heads, key[1], self.model.head_dim)
                cache.cross_keys = torch.zeros(shape, dtype=self.dtype, device=self.device)
                cache.cross_values = torch.zeros(shape, dtype=self.dtype, device=self.device)
                cache.cross_mask = torch.zeros(rows, 1, 1, key[1], dtype=torch.bool, device=self.device)
            self.model.position_table(self.length, self.dtype, self.device)
            self.buffers[key] = _Buffers(cache, torch.zeros(rows, len(self.model.embeddings), 1, dtype=torch.long,
                                                            device=self.device),
                                         torch.zeros(1, dtype=torch.long, device=self.device))
        return self.buffers[key]

    def steps(self, params: SamplingParams) -> GraphSteps:
        return GraphSteps(self, params)

    # --- graphs ---------------------------------------------------------------------------------------------
    def _autocast(self) -> Any:
        """The model's autocast, without its weight-cast cache (a graph must not capture a cache fill)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, cache_enabled=False)

    def _body(self, buffers: _Buffers, padded_batch: int, visible: int, params: SamplingParams) -> tuple[Any, Any]:
        """One step at `buffers.position`: the function the graphs capture."""
        with self._autocast():
            mask = (torch.arange(visible, device=self.device) <= buffers.position).view(1, visible)
            logits = self.model.forward(buffers.cache, buffers.tokens, buffers.position, visible, mask)
            return distribution(guided(logits, padded_batch, params.cfg_coef), params)

    def replay(self, buffers: _Buffers, padded_batch: int, visible: int, params: SamplingParams) -> tuple[Any, Any]:
        """The step of `buffers.tokens` at `buffers.position`, by the graph for these shapes (captured on first
        use: the warm-up run computes this very step, so capturing mid-request is exact)."""
        if not self.capture:
            return self._body(buffers, padded_batch, visible, params)
        key = (id(buffers), visible, params)
        if key not in self.graphs:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self._body(buffers, padded_batch, visible, params)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):  # a private pool: no graph can overwrite another's outputs
                outputs = self._body(buffers, padded_batch, visible, params)
            self.graphs[key] = (graph, outputs)
        graph, outputs = self.graphs[key]
        graph.replay()
        return outputs


class GraphSteps:
    """`decode_loop.Steps` over a GraphRunner: rows padded to the batch bucket, steps replayed from graphs."""

    def __init__(self, runner: GraphRunner, params: SamplingParams) -> None:
        self.runner, self.params = runner, params
        self.buffers: _Buffers | None = None
        self.batch = self.padded = 0

    def _pad(self, rows: torch.Tensor) -> torch.Tensor:
        """[conditional; unconditional] rows of the real batch -> the bucket's layout (row 0 repeated)."""
        cond, uncond = rows.split(self.batch)
        extra = self.padded - self.batch
        pad = [cond[:1].expand(extra, *cond.shape[1:]), uncond[:1].expand(extra, *uncond.shape[1:])]
        return torch.cat([cond, pad[0], uncond, pad[1]])

    def begin(self, text: TextConditioning | None, batch: int, length: int) -> None:
        runner = self.runner
        if length > runner.length:
            raise InvalidRequest(f"a window of {length} steps exceeds the planned {runner.length}")
        text_length = 0 if text is None else text.length
        self.batch, self.padded = batch, bucket(batch)
        self.buffers = runner._buffers(batch, max(1, text_length))
        cache = self.buffers.cache
        if text is not None:
            if cache.cross_keys is None or cache.cross_values is None or cache.cross_mask is None:
                raise ValueError("text conditioning given to a model without cross-attention")
            keys, values = runner.model.cross_keys_values(self._pad(text.source))
            cache.cross_keys.zero_()
            cache.cross_values.zero_()
            cache.cross_keys[..., :text_length, :].copy_(keys)
            cache.cross_values[..., :text_length, :].copy_(values)
            cache.cross_mask.zero_()
            cache.cross_mask[:, 0, 0, :text_length] = True if text.mask is None else self._pad(text.mask)

    def _window(self) -> _Buffers:
        """The buffers of the window `begin` opened."""
        if self.buffers is None:
            raise RuntimeError("begin() a window before running steps")
        return self.buffers

    def _trim(self, result: tuple[Any, Any]) -> tuple[Any, Any]:
        weights, order = result
        return weights[:self.batch], None if order is None else order[:self.batch]

    def prefill(self, tokens: torch.Tensor) -> tuple[Any, Any]:
        runner, length = self.runner, tokens.shape[-1]
        positions = torch.arange(length, device=runner.device)
        with runner._autocast():
            logits = runner.model.forward(self._window().cache, self._pad(tokens), positions, length,
                                          causal_mask(length, runner.device))
            return self._trim(distribution(guided(logits, self.padded, self.params.cfg_coef), self.params))

    def step(self, tokens: torch.Tensor, position: int) -> tuple[Any, Any]:
        buffers = self._window()
        buffers.tokens.copy_(self._pad(tokens))
        buffers.position.fill_(position)
        visible = min(bucket(position + 1, FIRST_LENGTH_BUCKET), self.runner.length)
        return self._trim(self.runner.replay(buffers, self.padded, visible, self.params))

"""Make-An-Audio's sampling loop replayed as CUDA graphs.

At batch 1 a guided UNet step needs under a millisecond of GPU arithmetic but about 20 ms of Python and kernel
launches, so the eager loop is launch-bound. Here the loop of sampler.py (tensor tables, a device-side step
index, no host reads) is captured once per shape and replayed: `chunk` steps per graph, so progress still
reaches the user between chunks. Everything a graph reads lives in static buffers owned by its entry: the
latents and x0 history (sampler.Loop), the [uc; c] context and the guidance scale; a request copies its noise
and conditioning in, replays, and copies the result out. One entry per (batch bucket, latent width, sampler,
steps, guided or not): requests are padded up to the next bucket (pad rows are independent samples whose
output is dropped), and any guidance scale above 1 shares the guided graphs. Captures are kept for the life
of the process, so a shape's capture time is paid once (at worker start for the `warmup` shapes).

The stages around the loop are launch-bound too (H100, batch 1: text encoder 14 ms eager, 1.4 ms replayed; VAE
18 ms, 9 ms), so each is replayed from its own graph per batch bucket as well (`StageGraphs`).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .model import MAX_TOKENS, MakeAnAudio
from .sampler import Loop, StepHook
from .sampler import sample as run_loop

log = logging.getLogger(__name__)
_PoolHandle = Any
"""What `torch.cuda.graph_pool_handle()` returns (a private torch type; torch annotates it as a tuple here and
as `_POOL_HANDLE` in `torch.cuda.graph`)."""

GRAPH_CHUNK = 10  # steps per graph: progress every 10 steps, and few graphs per shape
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32)


def batch_bucket(n: int) -> int:
    """The captured batch size that serves `n` rows (n itself beyond the largest bucket)."""
    return next((b for b in BATCH_BUCKETS if b >= n), n)


@dataclass(frozen=True)
class GraphKey:
    batch: int  # a bucket
    width: int
    sampler: str
    steps: int
    guided: bool


class _Entry:
    """Static buffers and the captured chunk graphs of one shape."""

    def __init__(self, model: MakeAnAudio, key: GraphKey) -> None:
        device = model.device
        rows = key.batch * (2 if key.guided else 1)
        self.context = torch.zeros(rows, MAX_TOKENS, model.context_dim, device=device, dtype=model.dtype)
        self.scale = torch.ones(1, device=device)
        self.noise = torch.zeros(model.latent_shape(key.batch, key.width), device=device)
        context, scale = self.context, self.scale

        if key.guided:
            def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                e_u, e_c = model.unet_eps(torch.cat([x, x]), t, context).chunk(2)
                return e_u + scale * (e_c - e_u)
        else:
            def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                return model.unet_eps(x, t, context)

        self.loop = Loop(model.plan(key.sampler, key.steps), eps, self.noise.clone())
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.capture_s = 0.0

    def fill(self, noise: torch.Tensor, c: torch.Tensor, uc: torch.Tensor, guidance: float) -> None:
        """Copy a request's inputs into the static buffers; rows past the request repeat its first row."""
        n = noise.shape[0]
        self.noise.zero_()
        self.noise[:n].copy_(noise)
        rows = self.noise.shape[0]
        parts = [uc, c] if self.context.shape[0] == 2 * rows else [c]
        for i, part in enumerate(parts):
            block = self.context[i * rows:(i + 1) * rows]
            block[:n].copy_(part)
            block[n:].copy_(part[:1].expand(rows - n, -1, -1))
        self.scale.fill_(guidance)


class StageGraphs:
    """One pipeline stage (a function of one batch-first tensor) replayed from a CUDA graph per input shape.

    Inputs are padded to the batch bucket (with copies of their first row) so that few shapes are captured, and
    copied into a static buffer outside the pool. A shape whose capture fails (an operation that cannot be
    captured) runs eagerly from then on, with a warning.

    Every graph draws its memory from `pool`, shared with the sampling loop's graphs, so the memory held grows
    with the largest shape, not with the number of shapes captured. The price: the returned tensor (the graph's
    output, in the pool) is valid only until the next replay of any graph of the pool, which may reuse its
    memory. Callers use it at once: copy it, move it to the host, or hand it to the next stage, which copies it
    into its own input buffer before replaying.
    """

    def __init__(self, name: str, fn: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                 pool: _PoolHandle) -> None:
        self.name, self.fn, self.device, self.pool = name, fn, device, pool
        self.entries: dict[tuple, tuple[torch.Tensor, torch.cuda.CUDAGraph, torch.Tensor] | None] = {}

    @staticmethod
    def _key(x: torch.Tensor, rows: int) -> tuple:
        return (rows, *x.shape[1:], x.dtype)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        rows = batch_bucket(n)
        self.capture(x, rows)
        entry = self.entries[self._key(x, rows)]
        if entry is None:
            return self.fn(x)
        static_in, graph, static_out = entry
        static_in[:n].copy_(x)
        static_in[n:].copy_(x[:1].expand(rows - n, *x.shape[1:]))
        graph.replay()
        return static_out[:n]

    @torch.inference_mode()
    def capture(self, x: torch.Tensor, rows: int) -> float:
        """Capture the graph for `x`'s shape at `rows` rows (unless held); returns the seconds spent."""
        key = self._key(x, rows)
        if key in self.entries:
            return 0.0
        started = time.perf_counter()
        static_in = x[:1].expand(rows, *x.shape[1:]).clone()
        try:
            graph, static_out = self._record(static_in)
            self.entries[key] = (static_in, graph, static_out)
        except Exception as exc:  # an operation that cannot be captured: this shape stays eager
            log.warning("make_an_audio: %s runs eagerly for %s (its CUDA graph capture failed: %s: %s)",
                        self.name, tuple(key[:-1]), type(exc).__name__, str(exc)[:200])
            self.entries[key] = None
        return time.perf_counter() - started

    def _record(self, static_in: torch.Tensor) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        """The graph of `fn` on `static_in` and its output; run once off the capture first (kernel choices,
        compilation, library handles)."""
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            self.fn(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            static_out = self.fn(static_in)
        return graph, static_out


class GraphSampler:
    """Captures and replays the sampling loop of `model` (on CUDA) per shape, and the stages around it."""

    def __init__(self, model: MakeAnAudio, chunk: int = GRAPH_CHUNK) -> None:
        if model.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        self.model, self.chunk = model, chunk
        self.entries: dict[GraphKey, _Entry] = {}
        # no two graphs run at once: they share one scratch pool
        self.pool: _PoolHandle = torch.cuda.graph_pool_handle()
        self.text = StageGraphs("the text encoder", model.text_encoder, model.device, self.pool)
        self.vae = StageGraphs("the VAE decoder", model.decode, model.device, self.pool)
        self.vocoder = StageGraphs("the vocoder", model.vocode, model.device, self.pool)

    # --- the stages (stages.Stages) -------------------------------------------------------------------------
    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """The text encoder's graph; a copy, since the graph's output is overwritten by its next replay."""
        return self.text(self.model.tokenize(prompts).to(self.model.device)).clone()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae(z)

    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        return self.vocoder(mel)

    def capture_stages(self, batch: int, width: int) -> float:
        """Capture the text encoder (one prompt and "", and `batch` prompts and ""), VAE and vocoder graphs for
        clips of `width` latent columns at `batch`; returns the seconds spent."""
        model = self.model
        ids = model.tokenize([""]).to(model.device)
        z = torch.randn(model.latent_shape(1, width), device=model.device)
        spent = sum(self.text.capture(ids, batch_bucket(rows)) for rows in (2, batch + 1))
        spent += self.vae.capture(z, batch_bucket(batch))
        with torch.inference_mode():
            mel = model.decode(z)
        return spent + self.vocoder.capture(mel, batch_bucket(batch))

    def key(self, batch: int, width: int, sampler: str, steps: int, guidance: float) -> GraphKey:
        return GraphKey(batch_bucket(batch), width, sampler, steps, guidance != 1.0)

    @torch.inference_mode()
    def capture(self, key: GraphKey) -> float:
        """Capture the chunk graphs of `key` unless held already; returns the seconds spent now (0 if held)."""
        if key in self.entries:
            return 0.0
        started = time.perf_counter()
        entry = _Entry(self.model, key)
        loop, steps = entry.loop, entry.loop.plan.steps
        lengths = sorted({min(self.chunk, steps), steps % self.chunk} - {0})
        device = self.model.device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up off the capture: library handles, kernel choices, allocations
            for k in lengths:
                loop.restart(entry.noise)
                loop.advance(k)
        torch.cuda.current_stream(device).wait_stream(side)
        for k in lengths:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                loop.advance(k)
            entry.graphs[k] = graph
        torch.cuda.synchronize(device)
        entry.capture_s = time.perf_counter() - started
        self.entries[key] = entry
        log.info("make_an_audio: captured CUDA graphs for %s in %.1f s", key, entry.capture_s)
        return entry.capture_s

    @torch.inference_mode()
    def sample(self, noise: torch.Tensor, c: torch.Tensor, uc: torch.Tensor, *, steps: int, guidance: float,
               sampler: str, hook: StepHook | None = None) -> tuple[torch.Tensor, float]:
        """(clean latents fp32, seconds spent capturing for this call) for `noise` (N, 4, 10, W)."""
        n, width = noise.shape[0], noise.shape[-1]
        key = self.key(n, width, sampler, steps, guidance)
        capture_s = self.capture(key)
        entry = self.entries[key]
        entry.fill(noise.to(self.model.device, torch.float32), c, uc, guidance)
        z = run_loop(entry.noise, entry.loop.eps, entry.loop.plan, hook, self.chunk,
                     runner=lambda loop: lambda k: entry.graphs[k].replay(), loop=entry.loop, rows=n)
        return z[:n], capture_s

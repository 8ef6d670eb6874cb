"""GPU timing shared by the speed scripts: a call as the product runs it, replayed from a CUDA graph."""
from __future__ import annotations

import statistics
from collections.abc import Callable

import torch


def replay_ms(fn: Callable[[], object], calls: int = 10, replays: int = 10) -> tuple[float, float]:
    """(eager ms per call, graph-replayed ms per call) of `fn`, which must read and write static tensors only."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    eager = []
    for _ in range(5):
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        eager.append(start.elapsed_time(end) / calls)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    replayed = []
    for _ in range(replays):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        replayed.append(start.elapsed_time(end) / calls)
    del graph
    return statistics.median(eager), statistics.median(replayed)

"""Peak memory of one benchmark run: process RSS sampled in a thread, and CUDA's allocator peak when in use."""
from __future__ import annotations

import sys
import threading
from types import TracebackType

import psutil


def _cuda():
    """torch.cuda when torch is already imported and a GPU is initialised; never imports torch itself."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda


class PeakMemory:
    """Context manager recording the highest RSS (MiB) and CUDA max allocated (MiB, None without CUDA)."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.process = psutil.Process()
        self.rss_mb = 0.0
        self.cuda_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        self.rss_mb = max(self.rss_mb, self.process.memory_info().rss / 2**20)

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "PeakMemory":
        cuda = _cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats()
        self._sample()
        self._thread = threading.Thread(target=self._poll, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        cuda = _cuda()
        if cuda is not None:
            self.cuda_mb = cuda.max_memory_allocated() / 2**20

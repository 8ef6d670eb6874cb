"""How many CPU threads a worker's models use: the cores shared fairly among the workers of one machine.

torch starts as many threads as there are cores in every process; four workers on two cores then fight over
them and together run slower than one (measured: 0.10x). So each worker registers itself in a folder of this
machine (one file per process id) and, before every batch, sets torch's thread count to cores / live workers:
a worker started later makes the others shrink at their next batch, one that stops makes them grow.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def _default_folder() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"tag-workers-{os.getuid()}"


def _usable_cores() -> int:
    """Cores this process may run on (a container's or taskset's limit, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process with a recycled pid: count it, it uses cores too
        return True
    return True


class ThreadShare:
    """This process's share of the machine's cores (or a fixed `threads` count); call `apply` between batches."""

    def __init__(self, threads: int | None = None, *, folder: Path | None = None, cores: int | None = None) -> None:
        self.fixed = threads
        self.cores = cores or _usable_cores()
        self.folder = folder or _default_folder()
        self.applied: int | None = None
        self._entry: Path | None = None

    def __enter__(self) -> "ThreadShare":
        if self.fixed is None:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._entry = self.folder / str(os.getpid())
            self._entry.touch()
        self.apply()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._entry is not None:
            self._entry.unlink(missing_ok=True)

    def workers(self) -> int:
        """Live registered workers on this machine (stale entries of dead processes are removed)."""
        live = 0
        for entry in self.folder.iterdir() if self.folder.is_dir() else ():
            if entry.name.isdigit() and _alive(int(entry.name)):
                live += 1
            else:
                entry.unlink(missing_ok=True)
        return max(1, live)

    def threads(self) -> int:
        return self.fixed if self.fixed is not None else max(1, self.cores // self.workers())

    def apply(self) -> int:
        """Set torch's intra-op threads to this worker's share (only when torch is in use and it changed)."""
        wanted = self.threads()
        if wanted != self.applied and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(wanted)
        self.applied = wanted
        return wanted

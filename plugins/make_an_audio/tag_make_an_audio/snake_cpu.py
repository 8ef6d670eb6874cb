"""The fused CPU snake (snake_cpu.c): built with the machine's C compiler, run through ctypes on torch's thread count.

Why C and not a torch extension: the kernel needs no torch headers, so it compiles in well under a second with any
C compiler (`$CC`, else cc / gcc / clang) instead of the tens of seconds a C++ extension takes, and loads with
ctypes, which releases the GIL during the call, so Python threads run row ranges in parallel without a second
OpenMP runtime beside torch's.

It is compiled for this machine's CPU (`-march=native`, so its loops use the widest vector units there) and cached
under `$XDG_CACHE_HOME/tag/kernels` (by default ~/.cache/tag/kernels), keyed by the source, the compiler and the
CPU's feature flags: a home folder shared by machines with other CPUs gets one build per CPU kind, never a library
that would stop on an unknown instruction.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from tagcore import config

SOURCE = Path(__file__).with_name("snake_cpu.c")
FLAG_SETS = (["-O3", "-march=native"], ["-O3"])  # the second for compilers / CPUs without -march=native
COMPILE_TIMEOUT_S = 120


class BuildError(RuntimeError):
    """No C compiler, or it failed: the PyTorch polyphase form stays."""


def cache_dir() -> Path:
    return config.cache_dir() / "kernels"


def compiler() -> list[str]:
    """The C compiler command: `$CC` when set, else the first of cc, gcc, clang on PATH."""
    if os.environ.get("CC"):
        return shlex.split(os.environ["CC"])
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return [found]
    raise BuildError("no C compiler found (set CC, or install gcc or clang)")


def cpu_signature() -> str:
    """What the CPU can run: its feature flags where Linux lists them, else the platform's processor name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


class SnakeLibrary:
    """The loaded kernel: `forward` runs every row of a (batch, channels, length) float32 tensor."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lib = ctypes.CDLL(str(path))
        self._rows = self._lib.tag_snake_rows
        self._rows.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_long,
                               ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self._rows.restype = ctypes.c_int

    def forward(self, x: torch.Tensor, taps: torch.Tensor, alpha: torch.Tensor, inv_beta: torch.Tensor) -> torch.Tensor:
        """x: contiguous float32 (batch, channels, length); taps: the 24 polyphase taps; alpha, inv_beta: one per
        channel."""
        batch, channels, length = x.shape
        out = torch.empty_like(x)
        rows = batch * channels
        parts = max(1, min(torch.get_num_threads(), rows))
        bounds = [rows * i // parts for i in range(parts + 1)]
        pointers = (x.data_ptr(), out.data_ptr(), channels, length)
        constants = (taps.data_ptr(), alpha.data_ptr(), inv_beta.data_ptr())

        def run(first: int, last: int) -> int:
            return self._rows(*pointers, first, last, *constants)

        pending = [_pool().submit(run, bounds[i], bounds[i + 1]) for i in range(1, parts)]
        failures = run(bounds[0], bounds[1]) + sum(future.result() for future in pending)
        if failures:
            raise MemoryError("the fused snake could not allocate its scratch tile")
        return out


_pool_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """Threads for all but the first row range of a call (that one runs on the caller's thread)."""
    global _executor
    with _pool_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 1) - 1),
                                           thread_name_prefix="tag-snake")
        return _executor


def build() -> SnakeLibrary:
    """Compile (or load the cached build of) the kernel for this machine; BuildError when that cannot be done."""
    command = compiler()
    source, cpu = SOURCE.read_bytes(), cpu_signature().encode()
    errors = []
    for flags in FLAG_SETS:
        key = hashlib.sha256(b"\0".join([source, " ".join(command + flags).encode(), cpu]))
        target = cache_dir() / f"snake_cpu_{key.hexdigest()[:20]}.so"
        if not target.exists():
            try:
                _compile(command + flags, target)
            except BuildError as exc:
                errors.append(str(exc))
                continue
        return SnakeLibrary(target)
    raise BuildError("; ".join(errors))


def _compile(command: list[str], target: Path) -> None:
    """Compile into a temporary file beside `target`, then rename it, so racing workers never load half a file."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(handle)
    except OSError as exc:
        raise BuildError(f"cannot write {target.parent} ({exc})") from None
    try:
        done = subprocess.run([*command, "-shared", "-fPIC", "-o", partial, str(SOURCE), "-lm"], capture_output=True,
                              text=True, timeout=COMPILE_TIMEOUT_S)
        if done.returncode:
            said = (done.stderr or done.stdout).strip()[:300]
            raise BuildError(f"{shlex.join(command)} exited with status {done.returncode}"
                             + (f": {said}" if said else ""))
        os.replace(partial, target)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"{shlex.join(command)} did not run ({type(exc).__name__}: {exc})") from None
    finally:
        if os.path.exists(partial):
            os.unlink(partial)

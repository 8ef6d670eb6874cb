"""Device and dtype choices for torch backends (torch is imported only when a backend asks)."""
from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import Any


def resolve_device(name: str) -> Any:
    """`auto` -> cuda when available else cpu; `cuda` without a GPU is a clear error."""
    import torch

    from .errors import InvalidRequest

    if name in ("", "auto", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidRequest("device cuda was asked for, but torch sees no CUDA GPU on this machine")
    return torch.device(name)


def resolve_dtype(name: str, device: Any) -> Any:
    """`auto` -> float32 on CPU, bfloat16 on a GPU that supports it (else float16)."""
    import torch

    from .errors import InvalidRequest

    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if name in ("", "auto", None):
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name not in table:
        raise InvalidRequest(f"unknown dtype {name!r} (choose from auto, {', '.join(table)})")
    if device.type == "cpu" and name == "fp16":
        raise InvalidRequest("fp16 is for GPUs; use fp32 (or bf16) on the CPU")
    return table[name]


class _DropUnusedKernelWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "can't load C++/CUDA extensions" not in record.getMessage()


@contextlib.contextmanager
def quiet_model_loading() -> Iterator[None]:
    """Load a model inside this block: two known, harmless third-party warnings are dropped, nothing else.

    Why: audiocraft imports xformers unconditionally and diffusers imports it whenever it is installed, but both
    run attention through torch's scaled_dot_product_attention here (audiocraft's default 'torch' backend,
    diffusers' default processor) and use only xformers' pure-Python helpers. The newest xformers on PyPI
    (0.0.35) is built for torch 2.10, so with torch 2.11 every run printed its warning about kernels it never
    calls. And audiocraft builds its codec with torch's old weight_norm, which torch 2.11 flags as deprecated
    (a FutureWarning for the library's authors, not for a user generating a clip).
    """
    logger = logging.getLogger("xformers")
    if not any(isinstance(f, _DropUnusedKernelWarning) for f in logger.filters):
        logger.addFilter(_DropUnusedKernelWarning())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.nn\.utils\.weight_norm.* is deprecated",
                                category=FutureWarning)
        yield


def free_memory() -> None:
    """Collect garbage and return cached CUDA blocks, after a backend dropped its model (unload)."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()

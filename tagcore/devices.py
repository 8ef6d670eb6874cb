"""Device and dtype choices for torch backends (torch is imported only when a backend asks)."""
from __future__ import annotations

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


def free_memory() -> None:
    """Collect garbage and return cached CUDA blocks, after a backend dropped its model (unload)."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()

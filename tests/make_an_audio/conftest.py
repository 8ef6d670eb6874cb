"""Fixtures: a tiny Make-An-Audio folder in the official layout, and the golden reference when ../shared exists."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tag_testkit.backends import loaded_on_cpu

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO.parent / "shared" / "make_an_audio" / "golden"


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    from tag_testkit.make_an_audio_tiny import write_folder

    return write_folder(tmp_path_factory.mktemp("maa_tiny"))


@pytest.fixture(scope="session")
def cpu_activation_path() -> str:
    """The activation path a CPU vocoder must take here: compiled where this machine can build the kernel."""
    from tag_make_an_audio import snake_cpu
    from tag_make_an_audio import vocoder as voc

    try:
        snake_cpu.build()
    except snake_cpu.BuildError:
        return voc.PATH_POLYPHASE
    return voc.PATH_CPU_KERNEL


@pytest.fixture
def pytorch_polyphase(monkeypatch) -> None:
    """CPU vocoders get the PyTorch polyphase activations, as on a machine without a C compiler."""
    from tag_make_an_audio import snake_cpu

    def no_compiler() -> snake_cpu.SnakeLibrary:
        raise snake_cpu.BuildError("no C compiler (test)")

    monkeypatch.setattr(snake_cpu, "build", no_compiler)


@pytest.fixture(scope="session")
def library():
    """The C snake built for this machine (snake_cpu.c)."""
    from tag_make_an_audio import snake_cpu

    try:
        return snake_cpu.build()
    except snake_cpu.BuildError as exc:
        pytest.skip(f"the fused CPU snake needs a C compiler: {exc}")


@pytest.fixture
def triton_interpreted(monkeypatch):
    """The Triton snake run by Triton's CPU interpreter: the same kernel source, grid and masks as on a GPU.

    TRITON_INTERPRET must be set while a kernel is jitted and launched; the helpers the kernel calls were jitted
    for the GPU when snake_triton was imported, so they are jitted again too."""
    import functools

    triton = pytest.importorskip("triton", reason="Triton comes with torch's Linux wheels; this torch has none")
    snake_triton = pytest.importorskip("tag_make_an_audio.snake_triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    for name, value in list(vars(snake_triton).items()):
        if isinstance(value, triton.runtime.JITFunction):
            monkeypatch.setattr(snake_triton, name, triton.jit(value.fn))
    return functools.partial(snake_triton.snake, jitted=triton.jit(snake_triton._snake_kernel))


@pytest.fixture(scope="session")
def tiny_backend(tiny_weights):
    from tag_make_an_audio.backend import MakeAnAudioBackend

    backend = loaded_on_cpu(MakeAnAudioBackend, tiny_weights)
    return backend


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    if not (GOLDEN / "case_a.npz").is_file():
        pytest.skip(f"golden reference not available ({GOLDEN} is absent: it exists only in the project workspace)")
    return GOLDEN


@pytest.fixture(scope="session")
def golden_weights(golden_dir, tmp_path_factory) -> Path:
    """Derive the 1.9 GB stand-in weights once per session (about 11 s) with the reference's own script."""
    out = tmp_path_factory.mktemp("maa_golden")
    subprocess.run([sys.executable, str(golden_dir / "derive_weights.py"), str(out)], check=True)
    return out

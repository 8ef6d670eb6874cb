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

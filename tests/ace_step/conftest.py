"""Fixtures: tiny random ACE-Step pipelines (turbo and base) in the hub layout, and backends on them."""
from __future__ import annotations

from pathlib import Path

import pytest
from tag_testkit.backends import loaded_on_cpu


@pytest.fixture(scope="session")
def turbo_folder(tmp_path_factory) -> Path:
    from tag_testkit.ace_step_tiny import write

    return write(tmp_path_factory.mktemp("ace") / "tiny-ace-turbo")


@pytest.fixture(scope="session")
def base_folder(tmp_path_factory) -> Path:
    from tag_testkit.ace_step_tiny import write

    return write(tmp_path_factory.mktemp("ace") / "tiny-ace-base", seed=1, turbo=False)


@pytest.fixture(scope="session")
def ace(turbo_folder):
    from tag_ace_step.backend import AceStepBackend

    return loaded_on_cpu(AceStepBackend, turbo_folder)


@pytest.fixture(scope="session")
def direct(turbo_folder):
    """The diffusers pipeline loaded straight from the folder, as a user would call it."""
    from diffusers import AceStepPipeline

    pipe = AceStepPipeline.from_pretrained(str(turbo_folder))
    pipe.set_progress_bar_config(disable=True)
    return pipe

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


@pytest.fixture(scope="module")
def ace_server(ace):
    """An HTTP frontend on 127.0.0.1 with an embedded worker serving the tiny ace_step; yields its base URL."""
    import threading

    from tag_http.frontend import HttpFrontend
    from tagcore.config import Config
    from tagcore.inprocess import InProcessTransport
    from tagcore.worker import GeneratorService, served_specs, start_embedded_worker

    config = Config(default_backend="ace_step", max_duration=600.0)
    transport = InProcessTransport(config)
    backends = {"ace_step": ace}
    service = GeneratorService(backends, transport.job_source(served_specs(backends)), config)
    worker, worker_stop = start_embedded_worker(service)
    frontend = HttpFrontend(config, transport, {"port": 0, "backends": "ace_step", "api_key": ""})
    stop = threading.Event()
    thread = threading.Thread(target=frontend.run, args=(stop,), daemon=True)
    thread.start()
    assert frontend.ready.wait(15), "the HTTP server did not start"
    try:
        yield f"http://127.0.0.1:{frontend.port}"
    finally:
        stop.set()
        thread.join(15)
        worker_stop.set()
        worker.join(5)

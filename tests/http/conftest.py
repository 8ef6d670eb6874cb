"""A real TAG HTTP server on 127.0.0.1 for the tests: in-process transport + an embedded worker serving `tone`."""
from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

import tag_testkit.tone
from tag_testkit.postgres import postgres_node  # noqa: F401  (the session's private PostgreSQL, for store tests)
from tag_http.frontend import HttpFrontend
from tagcore import plugins
from tagcore.config import Config
from tagcore.inprocess import InProcessTransport
from tagcore.worker import GeneratorService, served_specs, start_embedded_worker

API_KEY = "test-key-0123456789"


@dataclass
class Server:
    url: str
    frontend: HttpFrontend
    config: Config
    key: str

    def client(self, key: str | None = "", headers: Mapping[str, str] | None = None) -> httpx.Client:
        """An httpx client sending the server's key (`key=None`: none; any other string: that one)."""
        key = self.key if key == "" else key
        sent = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers={**sent, **(headers or {})}, timeout=30)


@contextlib.contextmanager
def running_server(settings: Mapping[str, Any] | None = None, *, api_key: str = API_KEY,
                   serve: tuple[str, ...] = ("tone",)) -> Iterator[Server]:
    """Run the frontend in a thread on a free port, with a worker for the `serve` backends (registered names),
    until closed."""
    if not plugins.get_plugin_manager().is_registered(tag_testkit.tone):
        plugins.register_plugin(tag_testkit.tone)
    config = Config(default_backend="tone", max_duration=20.0)
    transport = InProcessTransport(config)
    registry = plugins.backends()
    backends = {name: registry.get(name)() for name in serve}  # each name served by its own registered class
    service = GeneratorService(backends, transport.job_source(served_specs(backends)), config)
    worker, worker_stop = start_embedded_worker(service)
    private = tempfile.mkdtemp(prefix="tag-http-test-")  # a store of its own, never the user's data folder
    frontend = HttpFrontend(config, transport, {"port": 0, "backends": "tone", "api_key": api_key,
                                                "store": f"sqlite:///{private}/jobs.sqlite", **(settings or {})})
    stop = threading.Event()
    thread = threading.Thread(target=frontend.run, args=(stop,), daemon=True)
    thread.start()
    assert frontend.ready.wait(15), "the HTTP server did not start"
    try:
        yield Server(f"http://127.0.0.1:{frontend.port}", frontend, config, api_key)
    finally:
        stop.set()
        thread.join(15)
        worker_stop.set()
        worker.join(5)
        shutil.rmtree(private, ignore_errors=True)
        assert not thread.is_alive(), "the HTTP frontend did not return after stop was set"


@pytest.fixture()
def make_server():  # type: ignore[no-untyped-def]
    """`with make_server({...settings}) as srv:` runs an extra server with its own limits."""
    return running_server


@pytest.fixture(scope="module")
def make_server_module():  # type: ignore[no-untyped-def]
    """`make_server` for module-scoped fixtures."""
    return running_server


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server({"rate_limit": 600, "rate_burst": 200, "max_active_per_client": 50,
                         "max_upload_bytes": 300_000}) as srv:
        yield srv

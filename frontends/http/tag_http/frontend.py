"""The `http` frontend: runs the API and web page under uvicorn until the stop event is set."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from tagcore.config import Config
from tagcore.frontend import Frontend
from tagcore.requester import Requester
from tagcore.runtime import client_catalog
from tagcore.transport import Transport

from .api import create_app
from .catalog import Catalog
from .jobs import JobStore
from .limits import BodySizeLimit, RateLimiter
from .metrics import instrument
from .settings import HttpSettings
from .waiting import Waiting

log = logging.getLogger(__name__)
UPLOAD_PATHS = ("/v1/jobs/upload", "/v1/audio/voices")
Lifespan = Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]


class HttpFrontend(Frontend):
    """REST API + web page. Settings: see `HttpSettings` (`[http]` table, TAG_HTTP_*, `tag serve` flags)."""

    name = "http"
    description = "REST API with an OpenAPI schema, server-sent progress and a small web page."

    def __init__(self, config: Config, transport: Transport, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(config, transport, settings)
        self.http = HttpSettings.from_mapping(self.settings)
        self.catalog = Catalog(config, client_catalog(transport, config), self.http.backends,
                               self.http.default_duration)
        self.ready = threading.Event()
        """Set once the server listens; `port` then holds the bound port (useful with port 0)."""
        self.port: int | None = None
        self.store: JobStore | None = None
        """The running server's job store (for inspection; None before `run`)."""

    def run(self, stop: threading.Event) -> None:
        client = self.transport.client(name=self.http.reply_queue)
        store = self.store = JobStore(self.http.result_ttl, self.http.results_dir, self.http.store_url())
        client.add_listener(store.on_event)
        requester = Requester(client, self.catalog.backends, self.config, source="http", priority=self.http.priority,
                              default_duration=self.http.default_duration)
        instrument(self.metrics, client, store, self.catalog)
        limiter = RateLimiter(self.http.rate_limit, self.http.rate_burst)
        waiting = Waiting(store, self.http.disconnect_grace)
        app = create_app(self.config, requester, waiting, self.catalog, limiter, transport_name=self.transport.name,
                         max_active_per_client=self.http.max_active_per_client, max_pending=self.http.max_pending,
                         api_key=self.http.api_key.reveal(), metrics=self.metrics)
        app.router.lifespan_context = self._lifespan(store, requester)
        limits = BodySizeLimit(app, lambda path: self.http.max_upload_bytes if path in UPLOAD_PATHS
                               else self.http.max_json_bytes)
        server = _Server(uvicorn.Config(
            limits, host=self.http.host, port=self.http.port, proxy_headers=bool(self.http.forwarded_allow_ips),
            forwarded_allow_ips=self.http.forwarded_allow_ips or None, limit_concurrency=self.http.max_connections,
            timeout_graceful_shutdown=5, log_level="info",
            server_header=False,
        ), self, stop)

        def watch() -> None:
            stop.wait()
            client.close()  # no answer is taken (and acked) any more: unacked ones go back to the queue
            waiting.close()  # its streams' clients may reconnect elsewhere: their jobs are not cancelled here
            store.close()  # ends event streams first, so the graceful shutdown does not wait for them
            server.should_exit = True

        watcher = threading.Thread(target=watch, name="tag-http-stop", daemon=True)
        watcher.start()
        try:
            server.run()
        finally:
            stop.set()
            watcher.join(timeout=5)
            client.close()
            waiting.close()
            store.close()

    @staticmethod
    def _lifespan(store: JobStore, requester: Requester) -> Lifespan:
        @contextlib.asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            store.start(asyncio.get_running_loop(), tell_workers=requester.cancel)
            yield

        return lifespan


class _Server(uvicorn.Server):
    """uvicorn's server, reporting the bound port once it listens and stopping through the frontend's `stop`."""

    def __init__(self, config: uvicorn.Config, frontend: HttpFrontend, stop: threading.Event) -> None:
        super().__init__(config)
        self.frontend = frontend
        self.stop = stop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGTERM/SIGINT while serving. uvicorn takes these signals over from the command (which would set
        `stop`) and starts its own shutdown, which waits out the open event streams for its whole graceful
        timeout and then cancels them: `stop` is set instead, so answers stop being taken, the streams end, and
        then the server exits. A second signal is uvicorn's own (a third forces the exit)."""
        if self.stop.is_set():
            super().handle_exit(sig, frame)
        else:
            self.stop.set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.servers and self.servers[0].sockets:
            self.frontend.port = self.servers[0].sockets[0].getsockname()[1]
            log.info("TAG web page and API on http://%s:%s/ (API docs at /docs)", self.config.host, self.frontend.port)
        self.frontend.ready.set()

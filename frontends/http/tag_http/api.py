"""The FastAPI application: the routers (jobs, speech, catalog, page) over shared services, one error shape.

See tag_http.errors for the statuses; tag_http.services for what the routes share (the Requester through which
every request leaves, the job store, the offered backends, the key check and rate limit).
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tagcore.config import Config
from tagcore.metrics import Metrics
from tagcore.requester import Requester

from .catalog import Catalog
from .errors import install_error_handlers
from .limits import RateLimiter
from .metrics import metrics_router
from .routes import catalog as catalog_routes
from .routes import jobs, page, speech
from .services import Services
from .waiting import Waiting


def _package_version() -> str:
    try:
        return version("tag-http")
    except PackageNotFoundError:
        return "unknown"


SAFETY_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"))


class SafetyHeaders:
    """Adds SAFETY_HEADERS to every response that lacks them. Plain ASGI rather than `@app.middleware("http")`:
    Starlette's BaseHTTPMiddleware runs each request in a task group of its own and copies every body through a
    memory stream, a cost every request paid."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", ())}
                extra = [(name, value) for name, value in SAFETY_HEADERS if name not in present]
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(config: Config, requester: Requester, waiting: Waiting, catalog: Catalog, limiter: RateLimiter, *,
               transport_name: str, max_active_per_client: int, max_pending: int, api_key: str,
               metrics: Metrics) -> FastAPI:
    """The application; the caller owns the requester's transport client and the store under `waiting` (their
    life cycle is the server's)."""
    app = FastAPI(
        title="TAG",
        version=_package_version(),
        description="Text-to-audio generation. Submit a job, follow its progress, download the sound as a file.",
    )
    app.state.services = Services(config, requester, waiting.store, catalog, limiter, transport_name,
                                  max_active_per_client, max_pending, api_key, waiting)
    install_error_handlers(app)
    app.include_router(metrics_router(metrics))
    app.include_router(catalog_routes.router)
    app.include_router(jobs.router)
    app.include_router(speech.router)
    page.mount_page(app)
    app.add_middleware(SafetyHeaders)
    return app

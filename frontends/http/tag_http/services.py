"""What every route shares, and the FastAPI dependencies that hand it out (key check, rate limit, job lookup).

`create_app` puts one `Services` on `app.state`; routers reach it through `services`, so each router is a plain
module of functions, testable and readable on its own. Dependencies that never block are `async def`: FastAPI
runs a plain `def` one in the thread pool, a thread hop per dependency and request.
"""
# No `from __future__ import annotations`: FastAPI evaluates the dependencies' annotations at import.
import hmac
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from tagcore.config import Config
from tagcore.requester import Requester

from .catalog import Catalog
from .errors import ApiError
from .idempotency import MAX_KEY_CHARS
from .jobs import JobRecord, JobStore
from .limits import RateLimiter
from .speech import VoiceStore
from .waiting import Waiting


@dataclass
class Services:
    """The server's state: the requester (the one way requests leave), the job store, the offered backends."""

    config: Config
    requester: Requester
    store: JobStore
    catalog: Catalog
    limiter: RateLimiter
    transport_name: str
    max_active_per_client: int
    max_pending: int
    api_key: str
    waiting: Waiting
    voices: VoiceStore = field(default_factory=VoiceStore)


async def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


Shared = Annotated[Services, Depends(services)]
key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the server's API key")
bearer = HTTPBearer(auto_error=False, description="the server's API key as a bearer token")


async def authorize(state: Shared, key: Annotated[str | None, Security(key_header)] = None,
              token: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None) -> None:
    """Accept the configured key from X-API-Key or Authorization: Bearer (constant-time comparison)."""
    if not state.api_key:
        return
    given = key if key is not None else (token.credentials if token is not None else None)
    if given is None or not hmac.compare_digest(given.encode(), state.api_key.encode()):
        raise ApiError(401, "unauthorized", "missing or wrong API key: send it as the X-API-Key header or as "
                                            "Authorization: Bearer <key>", {"WWW-Authenticate": "Bearer"})


def client_id(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def rate_limited(request: Request, state: Shared) -> str:
    """The caller's id, once the rate limiter lets this request through (429 with Retry-After otherwise)."""
    who = client_id(request)
    wait = state.limiter.take(who)
    if wait > 0:
        raise ApiError(429, "rate_limited", f"too many requests: try again in {wait:.0f} s",
                       {"Retry-After": RateLimiter.retry_after_header(wait)})
    return who


def job_or_404(job_id: str, state: Shared) -> JobRecord:
    record = state.store.get(job_id)
    if record is None:
        raise ApiError(404, "unknown_job", "no job with this id (ids are 32 hex digits; old jobs are forgotten)")
    return record


Protected = [Depends(authorize)]
Caller = Annotated[str, Depends(rate_limited)]
Job = Annotated[JobRecord, Depends(job_or_404)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=MAX_KEY_CHARS,
                                              description="retries with the same key return the same job")]

"""The FastAPI application: REST routes, authentication, limits, error shapes and the web page.

Every error leaves as `{"error": {"code", "message"}}` with a fitting status: 400 a request the backend or the
server limits reject, 401 a missing or wrong API key, 404 an unknown job, 409 a result not ready yet, 410 an
expired result, 413 a body over the limit, 422 a body of the wrong shape, 429 a rate or job limit, 503 a
transport that refused the request.
"""
# No `from __future__ import annotations`: FastAPI must evaluate the route annotations, which name local
# dependencies (rate_limited, the key schemes) that only exist inside create_app.
import hmac
import json
import re
import time
from collections.abc import AsyncIterator
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Query, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tagcore import audio as audio_io
from tagcore.audio_types import Audio
from tagcore.config import Config
from tagcore.errors import InvalidRequest, TagError
from tagcore.backend import MAX_SEED
from tagcore.messages import MAX_PROMPT_CHARS, MAX_WIRE_DURATION, SoundRequest
from tagcore.transport import TransportClient
from tagcore.validation import validate_request

from .catalog import Catalog
from .jobs import TERMINAL, JobRecord, JobStore
from .limits import RateLimiter
from .schemas import AudioFormat, BackendList, ErrorResponse, GenerateRequest, Health, JobLinks, JobStatus

MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg"}
KEEPALIVE_S = 15.0
PAGE_CSP = ("default-src 'self'; media-src 'self' blob:; img-src 'self' data:; style-src 'self'; "
            "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


class ApiError(Exception):
    """An error answer with its status, stable code and message (and optional headers)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse} for status in statuses}


def _package_version() -> str:
    try:
        return version("tag-http")
    except PackageNotFoundError:
        return "unknown"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "sound"


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def create_app(config: Config, client: TransportClient, store: JobStore, catalog: Catalog,
               limiter: RateLimiter, *, transport_name: str, max_active_per_client: int,
               max_pending: int, api_key: str) -> FastAPI:
    """The application; the caller owns the transport client and the store (their life cycle is the server's)."""
    app = FastAPI(
        title="TAG",
        version=_package_version(),
        description="Text-to-audio generation. Submit a job, follow its progress, download the sound as a file.",
    )
    key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the server's API key")
    bearer = HTTPBearer(auto_error=False, description="the server's API key as a bearer token")

    # --- errors -------------------------------------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(TagError)
    async def _tag_error(_: Request, exc: TagError) -> JSONResponse:
        return _error(400 if isinstance(exc, InvalidRequest) else 500, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid_shape(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_request", _validation_message(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    # --- dependencies -------------------------------------------------------------------------------------
    def authorize(key: Annotated[str | None, Security(key_header)] = None,
                  token: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None) -> None:
        """Accept the configured key from X-API-Key or Authorization: Bearer (constant-time comparison)."""
        if not api_key:
            return
        given = key if key is not None else (token.credentials if token is not None else None)
        if given is None or not hmac.compare_digest(given.encode(), api_key.encode()):
            raise ApiError(401, "unauthorized", "missing or wrong API key: send it as the X-API-Key header or as "
                                                "Authorization: Bearer <key>", {"WWW-Authenticate": "Bearer"})

    def client_id(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def rate_limited(request: Request) -> str:
        who = client_id(request)
        wait = limiter.take(who)
        if wait > 0:
            raise ApiError(429, "rate_limited", f"too many requests: try again in {wait:.0f} s",
                           {"Retry-After": RateLimiter.retry_after_header(wait)})
        return who

    def job_or_404(job_id: str) -> JobRecord:
        record = store.get(job_id)
        if record is None:
            raise ApiError(404, "unknown_job", "no job with this id (ids are 32 hex digits; old jobs are forgotten)")
        return record

    def status_of(request: Request, record: JobRecord) -> JobStatus:
        snap, position = store.snapshot(record)
        base = request.scope.get("root_path", "") + app.url_path_for("job_status", job_id=snap.id)
        error = {"code": snap.error_code, "message": snap.error_message or ""} if snap.state == "failed" else None
        if snap.state == "expired":
            error = {"code": "expired", "message": "the result expired and its files were deleted"}
        return JobStatus(
            id=snap.id, state=snap.state, stage=snap.stage, progress=snap.progress, position=position,
            prompt=snap.prompt, duration=snap.duration, audio_seconds=snap.audio_seconds,
            channels=snap.channels, sample_rate=snap.sample_rate,
            backend=snap.backend, seed=snap.seed,
            candidates=snap.candidates, model_id=snap.model_id, created_at=snap.created_at,
            started_at=snap.started_at, finished_at=snap.finished_at, expires_at=snap.expires_at,
            timings=snap.timings, metadata=snap.metadata, error=error,
            links=JobLinks(status=base, events=f"{base}/events",
                           audio={fmt: f"{base}/audio?format={fmt}" for fmt in MEDIA_TYPES}),
        )

    def submit(request: Request, body: GenerateRequest, audio_prompt: Audio | None, who: str) -> JSONResponse:
        if store.unfinished() >= max_pending:
            raise ApiError(503, "busy", "the server has too many unfinished jobs; try again in a minute",
                           {"Retry-After": "30"})
        if store.unfinished(who) >= max_active_per_client:
            raise ApiError(429, "too_many_jobs", f"you already have {max_active_per_client} unfinished jobs; "
                                                 "wait for one to finish", {"Retry-After": "5"})
        spec = catalog.resolve(body.backend)
        sound = SoundRequest(
            prompt=body.prompt, duration=body.duration or catalog.duration_for(spec), backend=spec.name,
            seed=body.seed, options=dict(body.options), candidates=body.candidates,
            negative_prompt=body.negative_prompt, audio_prompt=audio_prompt, client="http",
            deadline=time.time() + config.request_timeout,
        )
        validate_request(sound, spec, config)
        record = store.add(sound, who)
        try:
            client.submit(sound)
        except TagError as exc:
            store.discard(record.id)
            raise ApiError(503, "transport_unavailable", f"the job could not be queued: {exc.message}") from None
        status = status_of(request, record)
        return JSONResponse(status.model_dump(mode="json"), status_code=202, headers={"Location": status.links.status})

    protected = [Depends(authorize)]

    # --- routes -------------------------------------------------------------------------------------------
    @app.get("/v1/health", response_model=Health, tags=["server"])
    def health() -> Health:
        """Liveness and a few counters; needs no API key."""
        return Health(status="ok", version=app.version, transport=transport_name, jobs=store.count(),
                      unfinished=store.unfinished(), auth_required=bool(api_key))

    @app.get("/v1/backends", response_model=BackendList, dependencies=protected, tags=["backends"],
             responses=_errors(401))
    def list_backends() -> BackendList:
        """The backends this server offers, with duration ranges, capabilities and request options."""
        return catalog.describe()

    @app.post("/v1/jobs", status_code=202, response_model=JobStatus, dependencies=protected, tags=["jobs"],
              responses=_errors(400, 401, 413, 422, 429, 503))
    def create_job(request: Request, body: GenerateRequest, who: Annotated[str, Depends(rate_limited)]) -> Response:
        """Queue a generation from a JSON body; follow it at `links.status` or `links.events`."""
        return submit(request, body, None, who)

    @app.post("/v1/jobs/upload", status_code=202, response_model=JobStatus, dependencies=protected, tags=["jobs"],
              responses=_errors(400, 401, 413, 422, 429, 503))
    def create_job_with_audio(
        request: Request,
        who: Annotated[str, Depends(rate_limited)],
        prompt: Annotated[str, Form(max_length=MAX_PROMPT_CHARS)] = "",
        duration: Annotated[float | None, Form(gt=0, le=MAX_WIRE_DURATION, allow_inf_nan=False)] = None,
        backend: Annotated[str | None, Form(max_length=100)] = None,
        seed: Annotated[int | None, Form(ge=0, le=MAX_SEED)] = None,
        candidates: Annotated[int, Form(ge=1, le=64)] = 1,
        options: Annotated[str, Form(max_length=10_000, description='request options as a JSON object')] = "{}",
        negative_prompt: Annotated[str | None, Form(max_length=MAX_PROMPT_CHARS)] = None,
        audio_prompt: Annotated[UploadFile | None, File(
            description="WAV/FLAC/OGG/MP3: a clip to continue, or a voice sample for speech backends")] = None,
    ) -> Response:
        """Queue a generation from a multipart form, optionally with an audio prompt file."""
        try:
            parsed_options = json.loads(options or "{}")
            body = GenerateRequest(prompt=prompt, duration=duration, backend=backend or None, seed=seed,
                                   candidates=candidates, options=parsed_options, negative_prompt=negative_prompt)
        except json.JSONDecodeError:
            raise ApiError(422, "invalid_request", "options must be a JSON object such as {\"steps\": 50}") from None
        except ValidationError as exc:
            raise ApiError(422, "invalid_request", _validation_message(list(exc.errors()))) from None
        clip = None
        if audio_prompt is not None and (audio_prompt.filename or audio_prompt.size):
            clip = audio_io.decode(audio_prompt.file.read(audio_io.MAX_INPUT_BYTES + 1))
        return submit(request, body, clip, who)

    @app.get("/v1/jobs/{job_id}", response_model=JobStatus, dependencies=protected, tags=["jobs"],
             name="job_status", responses=_errors(401, 404))
    def job_status(request: Request, job_id: str) -> JobStatus:
        """Where a job stands: state, stage, progress, queue position, and once done the seed and links."""
        return status_of(request, job_or_404(job_id))

    @app.get("/v1/jobs/{job_id}/events", dependencies=protected, tags=["jobs"], responses={
        200: {"content": {"text/event-stream": {}}, "description": "`status` events (JobStatus JSON) until the "
              "job finishes; comment lines keep the connection alive"}, **_errors(401, 404)})
    async def job_events(request: Request, job_id: str) -> StreamingResponse:
        """Server-sent events: the job's status on every change, ending after the final state."""
        record = job_or_404(job_id)

        async def stream() -> AsyncIterator[str]:
            seen = -1
            while True:
                if record.version != seen:
                    seen = record.version
                    status = status_of(request, record)
                    yield f"event: status\nid: {seen}\ndata: {status.model_dump_json()}\n\n"
                    if status.state in TERMINAL:
                        return
                if store.closed or await request.is_disconnected():
                    return
                await store.wait_for_change(record, seen, KEEPALIVE_S)
                if record.version == seen:
                    yield ": keep-alive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/v1/jobs/{job_id}/audio", dependencies=protected, tags=["jobs"], responses={
        200: {"content": {t: {} for t in MEDIA_TYPES.values()}, "description": "the sound file"},
        **_errors(401, 404, 409, 410, 422)})
    def job_audio(job_id: str, format: Annotated[AudioFormat, Query()] = "wav") -> Response:
        """The result as a WAV (PCM 16), FLAC or OGG/Opus file."""
        record = job_or_404(job_id)
        data = store.result_bytes(record, format)
        if data is None:
            snap, _ = store.snapshot(record)
            if snap.state == "expired":
                raise ApiError(410, "expired", "the result expired and its files were deleted; generate it again "
                                               "with the same seed")
            if snap.state == "failed":
                raise ApiError(409, snap.error_code or "failed", f"the job failed: {snap.error_message}")
            raise ApiError(409, "not_ready", f"the job is {snap.state}; wait until its state is done")
        name = f"tag-{_slug(record.prompt)}-{record.seed}.{format}"
        return Response(data, media_type=MEDIA_TYPES[format],
                        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})

    # --- the web page -------------------------------------------------------------------------------------
    static = resources.files("tag_http") / "static"

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((static / "index.html").read_text(encoding="utf-8"),
                            headers={"Content-Security-Policy": PAGE_CSP, "X-Frame-Options": "DENY"})

    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.middleware("http")
    async def _no_sniff(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    return app

"""The FastAPI application: REST routes, authentication, limits, error shapes and the web page.

Every error leaves as `{"error": {"code", "message"}}` with a fitting status: 400 a request the backend or the
server limits reject, 401 a missing or wrong API key, 404 an unknown job, 409 a result not ready yet, 410 an
expired result, 413 a body over the limit, 422 a body of the wrong shape, 429 a rate or job limit, 503 a
transport that refused the request.
"""
# No `from __future__ import annotations`: FastAPI must evaluate the route annotations, which name local
# dependencies (rate_limited, the key schemes) that only exist inside create_app.
import asyncio
import hmac
import json
import re
import time
from collections.abc import AsyncIterator
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Header, Query, Request, Security, UploadFile
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
from tagcore.fairness import FairShare
from tagcore.backend import MAX_SEED
from tagcore.spec import BackendSpec
from tagcore.messages import MAX_PROMPT_CHARS, MAX_WIRE_DURATION, SoundRequest
from tagcore.metrics import Metrics
from tagcore.transport import TransportClient
from tagcore.validation import validate_request

from .catalog import Catalog
from .idempotency import CLIENT_JOB_ID, MAX_KEY_CHARS, fingerprint, job_id_for_key
from .jobs import TERMINAL, JobRecord, JobStore
from .limits import RateLimiter
from .metrics import metrics_router
from .speech import MEDIA_TYPES as SPEECH_MEDIA_TYPES
from .speech import OPENAI_MODELS, SpeechRequest, VoiceSample, VoiceStore, check_format, encode_speech, \
    speech_options
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


REPLAY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": JobStatus, "description": "a retry with a known Idempotency-Key: the job it created"},
    **_errors(400, 401, 409, 413, 422, 429, 503)}
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=MAX_KEY_CHARS,
                                              description="retries with the same key return the same job")]


def create_app(config: Config, client: TransportClient, store: JobStore, catalog: Catalog,
               limiter: RateLimiter, fair: FairShare, *, transport_name: str, max_active_per_client: int,
               max_pending: int, api_key: str, metrics: Metrics) -> FastAPI:
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
        if snap.state == "cancelled":
            error = {"code": "cancelled", "message": "the job was cancelled"}
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

    def enqueue(body: GenerateRequest, audio_prompt: Audio | None, who: str,
                resolved: BackendSpec | None = None, job_id: str | None = None) -> tuple[JobRecord, bool]:
        """Check the limits, validate and submit a request: its record and True, or for a `job_id` that is
        already known (a retry) that job's record and False."""
        digest = fingerprint(body, audio_prompt)
        if job_id is not None and (known := replayed(job_id, digest)) is not None:
            return known, False
        if store.unfinished() >= max_pending:
            raise ApiError(503, "busy", "the server has too many unfinished jobs; try again in a minute",
                           {"Retry-After": "30"})
        if store.unfinished(who) >= max_active_per_client:
            raise ApiError(429, "too_many_jobs", f"you already have {max_active_per_client} unfinished jobs; "
                                                 "wait for one to finish", {"Retry-After": "5"})
        spec = resolved or catalog.resolve(body.backend)
        sound = SoundRequest(
            prompt=body.prompt, duration=body.duration or catalog.duration_for(spec), backend=spec.name,
            seed=body.seed, options=dict(body.options), candidates=body.candidates,
            negative_prompt=body.negative_prompt, audio_prompt=audio_prompt, client="http",
            deadline=time.time() + config.request_timeout,
        )
        if job_id is not None:
            sound.request_id = job_id
        validate_request(sound, spec, config)
        record, created = store.add(sound, who, digest)
        if not created:  # the same id submitted concurrently: the first one won
            return replayed(job_id or record.id, digest) or record, False
        fair.assign(sound, who)
        try:
            client.submit(sound)
        except TagError as exc:
            fair.release(sound.request_id)
            store.discard(record.id)
            raise ApiError(503, "transport_unavailable", f"the job could not be queued: {exc.message}") from None
        return record, True

    def replayed(job_id: str, digest: str) -> JobRecord | None:
        """The job a retry refers to (None when the id is new); 409 when the retry's request differs."""
        record = store.get(job_id)
        if record is not None and record.fingerprint != digest:
            raise ApiError(409, "idempotency_conflict", "this job id (or Idempotency-Key) was already used for a "
                                                        "different request; choose a new one")
        return record

    def cancel(record: JobRecord) -> None:
        """Mark the job cancelled here and tell the workers (ApiError when it had finished or they can't hear)."""
        if not store.cancel(record):
            raise ApiError(409, "already_finished", f"the job is already {record.state}")
        try:
            client.cancel(record.id)
        except TagError as exc:
            raise ApiError(503, "transport_unavailable", f"the job is cancelled here but the workers could not be "
                                                         f"told: {exc.message}") from None

    def submit(request: Request, body: GenerateRequest, audio_prompt: Audio | None, who: str,
               job_id: str | None = None, created_status: int = 202) -> JSONResponse:
        """Enqueue and answer with the job: `created_status` for a new job, 200 for a retry of a known one."""
        record, created = enqueue(body, audio_prompt, who, job_id=job_id)
        status = status_of(request, record)
        headers = {"Location": status.links.status}
        if not created:
            headers["Idempotent-Replayed"] = "true"
        return JSONResponse(status.model_dump(mode="json"), status_code=created_status if created else 200,
                            headers=headers)

    protected = [Depends(authorize)]
    app.include_router(metrics_router(metrics))

    # --- routes -------------------------------------------------------------------------------------------
    @app.get("/v1/health", response_model=Health, tags=["server"])
    def health() -> Health:
        """Whether jobs can be served now, and a few counters; needs no API key. Always 200 while this server
        runs (a liveness probe must not restart it for a broker outage or a missing worker): read `status`."""
        served = sum(entry.available for entry in catalog.entries())
        problems = [problem for problem in (
            client.outage(),
            None if served else "no live worker serves any offered backend",
        ) if problem]
        return Health(status="degraded" if problems else "ok", problems=problems, version=app.version,
                      transport=transport_name, backends_served=served, jobs=store.count(),
                      unfinished=store.unfinished(), auth_required=bool(api_key))

    @app.get("/v1/backends", response_model=BackendList, dependencies=protected, tags=["backends"],
             responses=_errors(401))
    def list_backends() -> BackendList:
        """The backends this server offers, with duration ranges, capabilities and request options."""
        return catalog.describe()

    @app.post("/v1/jobs", status_code=202, response_model=JobStatus, dependencies=protected, tags=["jobs"],
              responses=REPLAY_RESPONSES)
    def create_job(request: Request, body: GenerateRequest, who: Annotated[str, Depends(rate_limited)],
                   key: IdempotencyKey = None) -> Response:
        """Queue a generation from a JSON body; follow it at `links.status` or `links.events`. With an
        `Idempotency-Key`, a retry returns the job the first attempt created (200) instead of a new one."""
        return submit(request, body, None, who, job_id=job_id_for_key(who, key) if key else None)

    @app.put("/v1/jobs/{job_id}", status_code=201, response_model=JobStatus, dependencies=protected,
             tags=["jobs"], responses={200: {"model": JobStatus, "description": "the job this id already names"},
                                       **_errors(400, 401, 409, 413, 422, 429, 503)})
    def put_job(request: Request, job_id: str, body: GenerateRequest,
                who: Annotated[str, Depends(rate_limited)]) -> Response:
        """Create the job with this id (1-64 letters, digits, _ or -) once; repeating the same PUT returns it."""
        if not CLIENT_JOB_ID.match(job_id):
            raise ApiError(400, "invalid_request", "a job id is 1 to 64 letters, digits, _ or - characters")
        return submit(request, body, None, who, job_id=job_id, created_status=201)

    @app.post("/v1/jobs/upload", status_code=202, response_model=JobStatus, dependencies=protected, tags=["jobs"],
              responses=REPLAY_RESPONSES)
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
        key: IdempotencyKey = None,
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
        return submit(request, body, clip, who, job_id=job_id_for_key(who, key) if key else None)

    @app.get("/v1/jobs/{job_id}", response_model=JobStatus, dependencies=protected, tags=["jobs"],
             name="job_status", responses=_errors(401, 404))
    def job_status(request: Request, job_id: str) -> JobStatus:
        """Where a job stands: state, stage, progress, queue position, and once done the seed and links."""
        return status_of(request, job_or_404(job_id))

    @app.delete("/v1/jobs/{job_id}", response_model=JobStatus, dependencies=protected, tags=["jobs"],
                responses=_errors(401, 404, 409, 503))
    def cancel_job(request: Request, job_id: str) -> JobStatus:
        """Cancel a job: a queued one never starts, a running one stops at its next step (repeating is harmless)."""
        record = job_or_404(job_id)
        cancel(record)
        return status_of(request, record)

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
            if snap.state == "cancelled":
                raise ApiError(409, "cancelled", "the job was cancelled; it has no audio")
            if snap.state == "failed":
                raise ApiError(409, snap.error_code or "failed", f"the job failed: {snap.error_message}")
            raise ApiError(409, "not_ready", f"the job is {snap.state}; wait until its state is done")
        name = f"tag-{_slug(record.prompt)}-{record.seed}.{format}"
        return Response(data, media_type=MEDIA_TYPES[format],
                        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})

    # --- OpenAI-compatible speech ---------------------------------------------------------------------------
    voices = VoiceStore()

    def speech_backend(model: str) -> BackendSpec:
        if model in OPENAI_MODELS:
            specs = {entry.spec.name: entry.spec for entry in catalog.entries()}
            speaking = [spec for spec in specs.values() if spec.variable_length]
            default = specs.get(catalog.default or "")
            cls = default if default is not None and default.variable_length else (speaking or [None])[0]
            if cls is None:
                raise ApiError(400, "unknown_backend", "this server offers no speech backend")
            return cls
        cls = catalog.resolve(model)
        if not cls.variable_length:
            raise ApiError(400, "not_speech", f"backend {cls.name!r} makes sounds, not speech: name a speech "
                                              "backend as the model")
        return cls

    @app.post("/v1/audio/voices", response_model=VoiceSample, dependencies=protected, tags=["speech"],
              responses=_errors(400, 401, 413, 429))
    def upload_voice(who: Annotated[str, Depends(rate_limited)],
                     file: Annotated[UploadFile, File(description="a WAV/FLAC/OGG/MP3 sample of the voice")]
                     ) -> VoiceSample:
        """Upload a speaker sample; pass its id as `voice` to clone it (kept for a day)."""
        return voices.add(audio_io.decode(file.file.read(audio_io.MAX_INPUT_BYTES + 1)))

    @app.post("/v1/audio/speech", dependencies=protected, tags=["speech"], responses={
        200: {"content": {t: {} for t in SPEECH_MEDIA_TYPES.values()}, "description": "the spoken text"},
        **_errors(400, 401, 422, 429, 503, 504)})
    async def speech(request: Request, body: SpeechRequest, who: Annotated[str, Depends(rate_limited)]) -> Response:
        """OpenAI-compatible text to speech: answers with the audio once the job is done."""
        cls = speech_backend(body.model)
        sample = voices.get(body.voice)
        options = speech_options(cls, body, sample)
        check_format(body.response_format)
        generate = GenerateRequest(prompt=body.input, backend=cls.name, options=options)
        record, _ = await asyncio.to_thread(enqueue, generate, sample, who, cls)
        seen = -1
        while record.state not in TERMINAL:
            if store.closed:
                raise ApiError(503, "shutting_down", "the server is shutting down")
            if await request.is_disconnected():  # the caller gave up: so do the workers
                await asyncio.to_thread(cancel, record)
                raise ApiError(499, "cancelled", "the client closed the connection")
            seen = record.version
            await store.wait_for_change(record, seen, 1.0)
        snap, _ = store.snapshot(record)
        if snap.state != "done":
            status = 504 if snap.error_code == "timed_out" else 400 if snap.error_code == "invalid_request" else 500
            raise ApiError(status, snap.error_code or "failed", snap.error_message or "the job failed")
        clip = await asyncio.to_thread(audio_io.read, snap.files["wav"])
        data = await asyncio.to_thread(encode_speech, clip, body.response_format)
        return Response(data, media_type=SPEECH_MEDIA_TYPES[body.response_format],
                        headers={"X-Tag-Job-Id": record.id, "Cache-Control": "no-store"})

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

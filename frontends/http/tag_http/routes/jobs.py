"""`/v1/jobs`: queue a generation (JSON, a PUT with the client's id, or a form with an audio file), follow it,
cancel it, download its sound."""
# No `from __future__ import annotations`: FastAPI evaluates the route annotations.
import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError

from tagcore import audio as audio_io
from tagcore.backend import MAX_SEED
from tagcore.errors import StartExpired
from tagcore.messages import MAX_PROMPT_CHARS, MAX_WIRE_DURATION

from ..errors import ApiError, error_schemas, validation_message
from ..idempotency import CLIENT_JOB_ID, job_id_for_key
from ..jobs import TERMINAL, JobRecord
from ..schemas import MAX_START_TIMEOUT, START_TIMEOUT_HELP, AudioFormat, GenerateRequest, JobStatus
from ..services import Caller, IdempotencyKey, Job, Protected, Services, Shared, job_or_404
from ..submission import MEDIA_TYPES, cancel, expiry_message, status_of, submit

KEEPALIVE_S = 15.0
REPLAY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": JobStatus, "description": "a retry with a known Idempotency-Key: the job it created"},
    **error_schemas(400, 401, 409, 413, 422, 429, 503)}

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=Protected)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "sound"


@router.post("", status_code=202, response_model=JobStatus, responses=REPLAY_RESPONSES)
def create_job(request: Request, body: GenerateRequest, who: Caller, state: Shared,
               key: IdempotencyKey = None) -> Response:
    """Queue a generation from a JSON body; follow it at `links.status` or `links.events`. With an
    `Idempotency-Key`, a retry returns the job the first attempt created (200) instead of a new one."""
    return submit(state, request, body, None, who, job_id=job_id_for_key(who, key) if key else None)


@router.put("/{job_id}", status_code=201, response_model=JobStatus,
            responses={200: {"model": JobStatus, "description": "the job this id already names"},
                       **error_schemas(400, 401, 409, 413, 422, 429, 503)})
def put_job(request: Request, job_id: str, body: GenerateRequest, who: Caller, state: Shared) -> Response:
    """Create the job with this id (1-64 letters, digits, _ or -) once; repeating the same PUT returns it."""
    if not CLIENT_JOB_ID.match(job_id):
        raise ApiError(400, "invalid_request", "a job id is 1 to 64 letters, digits, _ or - characters")
    return submit(state, request, body, None, who, job_id=job_id, created_status=201)


@router.post("/upload", status_code=202, response_model=JobStatus, responses=REPLAY_RESPONSES)
def create_job_with_audio(
    request: Request,
    who: Caller,
    state: Shared,
    prompt: Annotated[str, Form(max_length=MAX_PROMPT_CHARS)] = "",
    duration: Annotated[float | None, Form(gt=0, le=MAX_WIRE_DURATION, allow_inf_nan=False)] = None,
    backend: Annotated[str | None, Form(max_length=100)] = None,
    seed: Annotated[int | None, Form(ge=0, le=MAX_SEED)] = None,
    candidates: Annotated[int, Form(ge=1, le=64)] = 1,
    options: Annotated[str, Form(max_length=10_000, description='request options as a JSON object')] = "{}",
    negative_prompt: Annotated[str | None, Form(max_length=MAX_PROMPT_CHARS)] = None,
    start_timeout: Annotated[float | None, Form(gt=0, le=MAX_START_TIMEOUT, allow_inf_nan=False,
                                                description=START_TIMEOUT_HELP)] = None,
    key: IdempotencyKey = None,
    audio_prompt: Annotated[UploadFile | None, File(
        description="WAV/FLAC/OGG/MP3: a clip to continue, or a voice sample for speech backends")] = None,
) -> Response:
    """Queue a generation from a multipart form, optionally with an audio prompt file."""
    try:
        parsed_options = json.loads(options or "{}")
        body = GenerateRequest(prompt=prompt, duration=duration, backend=backend or None, seed=seed,
                               candidates=candidates, options=parsed_options, negative_prompt=negative_prompt,
                               start_timeout=start_timeout)
    except json.JSONDecodeError:
        raise ApiError(422, "invalid_request", "options must be a JSON object such as {\"steps\": 50}") from None
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", validation_message([dict(error) for error in exc.errors()])) from None
    clip = None
    if audio_prompt is not None and (audio_prompt.filename or audio_prompt.size):
        clip = audio_io.decode(audio_prompt.file.read(audio_io.MAX_INPUT_BYTES + 1))
    return submit(state, request, body, clip, who, job_id=job_id_for_key(who, key) if key else None)


@router.get("/{job_id}", response_model=JobStatus, name="job_status", responses=error_schemas(401, 404))
def job_status(request: Request, record: Job, state: Shared) -> JobStatus:
    """Where a job stands: state, stage, progress, queue position, and once done the seed and links."""
    return status_of(state, request, record)


@router.delete("/{job_id}", response_model=JobStatus, responses=error_schemas(401, 404, 409, 503))
def cancel_job(request: Request, record: Job, state: Shared) -> JobStatus:
    """Cancel a job: a queued one never starts, a running one stops at its next step (repeating is harmless)."""
    cancel(state, record)
    return status_of(state, request, record)


@router.get("/{job_id}/events", responses={
    200: {"content": {"text/event-stream": {}}, "description": "`status` events (JobStatus JSON) until the "
          "job finishes; comment lines keep the connection alive. The stream waits on the job: when the last "
          "client waiting on an unfinished job hangs up, the job is cancelled after the server's "
          "disconnect_grace (a client that reconnects within it keeps the job)"}, **error_schemas(401, 404)})
async def job_events(request: Request, record: Job, state: Shared) -> StreamingResponse:
    """Server-sent events: the job's status on every change, ending after the final state."""
    return StreamingResponse(status_events(request, record, state), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def status_events(request: Request, record: JobRecord, state: Services) -> AsyncIterator[str]:
    """The event stream of `job_events`, registered as a client waiting on the job while the job is unfinished
    (see tag_http.waiting); a hang-up shows here as the server cancelling this generator."""
    store, waiting = state.store, state.waiting
    seen, hung_up = -1, True
    stream = None if record.state in TERMINAL else waiting.new_stream(record.id)
    try:
        if stream is not None:
            await waiting.begin(record.id, stream)  # before the first event
        yield f"retry: {waiting.retry_ms}\n\n"
        while True:
            if record.version != seen:
                seen = record.version
                status = status_of(state, request, record)
                yield f"event: status\nid: {seen}\ndata: {status.model_dump_json()}\n\n"
                if status.state in TERMINAL:
                    hung_up = False
                    return
            if store.closed:
                hung_up = False
                return
            if await request.is_disconnected():
                return
            await store.wait_for_change(record, seen, KEEPALIVE_S)
            if record.version == seen:
                yield ": keep-alive\n\n"
    except Exception:  # the server failed, not the client: it may reconnect, nothing is cancelled for it
        hung_up = False
        raise
    finally:
        if stream is not None:
            waiting.end(record.id, stream, hung_up)


@router.get("/{job_id}/audio", responses={
    200: {"content": {t: {} for t in MEDIA_TYPES.values()}, "description": "the sound file"},
    **error_schemas(401, 404, 409, 410, 422)})
def job_audio(job_id: str, state: Shared, format: Annotated[AudioFormat, Query()] = "wav") -> Response:
    """The result as a WAV (PCM 16), FLAC or OGG/Opus file."""
    record = job_or_404(job_id, state)  # after the format's check: a wrong format is a 422 for any id
    data = state.store.result_bytes(record, format)
    if data is None:
        snap, _ = state.store.snapshot(record)
        if snap.state == "expired" and snap.error_code == StartExpired.code:
            raise ApiError(410, "expired", expiry_message(snap))
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

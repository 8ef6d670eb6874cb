"""Turning an API body into a queued job, and a job record into its public status.

Every job-record access goes through the JobStore's methods; every request leaves through the Requester, which
validates, ranks and submits it (and undoes the store's record when the transport refuses it).
"""
from __future__ import annotations

from typing import Literal, cast

from fastapi import Request
from fastapi.responses import Response

from tagcore.audio_types import Audio
from tagcore.errors import StartExpired, SubmitFailed, TagError
from tagcore.spec import BackendSpec

from .errors import ApiError
from .idempotency import fingerprint
from .jobs import JobRecord
from .records import LimitReached, Limits
from .schemas import ErrorDetail, GenerateRequest, JobLinks, JobStatus
from .services import Services

JobState = Literal["queued", "running", "done", "failed", "cancelled", "expired"]
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg"}


def enqueue(state: Services, body: GenerateRequest, audio_prompt: Audio | None, who: str,
            resolved: BackendSpec | None = None, job_id: str | None = None) -> tuple[JobRecord, bool]:
    """Check the limits, validate and submit a request: its record and True, or for a `job_id` that is
    already known (a retry) that job's record and False."""
    store = state.store
    digest = fingerprint(body, audio_prompt)
    if job_id is not None and (known := replayed(state, job_id, digest)) is not None:
        return known, False
    check_start_timeout(state, body.start_timeout)
    sound = state.requester.request(  # its start deadline, stored below, is the one the workers get
        body.prompt, backend=resolved or state.catalog.resolve(body.backend), duration=body.duration or None,
        seed=body.seed, options=body.options, candidates=body.candidates, negative_prompt=body.negative_prompt,
        audio_prompt=audio_prompt, request_id=job_id, start_timeout=body.start_timeout)
    try:
        record, created = store.add(sound, who, digest, Limits(state.max_pending, state.max_active_per_client))
    except LimitReached as exc:
        raise limit_error(state, exc.which) from None
    if not created:  # the same id submitted concurrently: the first one won
        return replayed(state, job_id or record.id, digest) or record, False
    try:
        state.requester.submit(sound, who, undo=lambda: store.discard(record.id))
    except SubmitFailed as exc:
        raise ApiError(503, "transport_unavailable", f"the job could not be queued: {exc.message}") from None
    return record, True


def check_start_timeout(state: Services, seconds: float | None) -> None:
    """A start_timeout beyond the request timeout could never apply (the job times out first): 400."""
    if seconds is not None and seconds > state.requester.timeout:
        raise ApiError(400, "invalid_request", f"start_timeout is {seconds:g} s, longer than this server's request "
                                               f"timeout of {state.requester.timeout:g} s; send at most that")


def limit_error(state: Services, which: str) -> ApiError:
    """The answer to a submit refused by a limit of unfinished jobs: the server's (503) or the client's (429)."""
    if which == "total":
        return ApiError(503, "busy", "the server has too many unfinished jobs; try again in a minute",
                        {"Retry-After": "30"})
    return ApiError(429, "too_many_jobs", f"you already have {state.max_active_per_client} unfinished jobs; "
                                          "wait for one to finish", {"Retry-After": "5"})


def replayed(state: Services, job_id: str, digest: str) -> JobRecord | None:
    """The job a retry refers to (None when the id is new); 409 when the retry's request differs. A job kept
    from an answer alone (its record was lost, so its request is unknown) is taken to be the one retried."""
    record = state.store.get(job_id)
    if record is not None and record.fingerprint and record.fingerprint != digest:
        raise ApiError(409, "idempotency_conflict", "this job id (or Idempotency-Key) was already used for a "
                                                    "different request; choose a new one")
    return record


def cancel(state: Services, record: JobRecord) -> None:
    """Mark the job cancelled here and tell the workers (ApiError when it had finished or they can't hear)."""
    if not state.store.cancel(record):
        raise ApiError(409, "already_finished", f"the job is already {record.state}")
    try:
        state.requester.cancel(record.id)
    except TagError as exc:
        raise ApiError(503, "transport_unavailable", f"the job is cancelled here but the workers could not be "
                                                     f"told: {exc.message}") from None


def status_of(state: Services, request: Request, record: JobRecord, live: bool = True) -> JobStatus:
    """The job's public status, with links under the server's root path; `live=False` for a job just submitted:
    its queue position as the transport reported it, with no store query."""
    snap, position = state.store.snapshot(record, live)
    base = request.scope.get("root_path", "") + request.app.url_path_for("job_status", job_id=snap.id)
    error = None
    if snap.state == "failed":
        error = ErrorDetail(code=snap.error_code or "failed", message=snap.error_message or "")
    if snap.state == "cancelled":
        error = ErrorDetail(code="cancelled", message="the job was cancelled")
    if snap.state == "expired":
        error = ErrorDetail(code="expired", message=expiry_message(snap))
    return JobStatus(
        id=snap.id, state=cast(JobState, snap.state), stage=snap.stage, progress=snap.progress, position=position,
        prompt=snap.prompt, duration=snap.duration, audio_seconds=snap.audio_seconds,
        channels=snap.channels, sample_rate=snap.sample_rate,
        backend=snap.backend, seed=snap.seed,
        candidates=snap.candidates, model_id=snap.model_id, created_at=snap.created_at,
        started_at=snap.started_at, finished_at=snap.finished_at, expires_at=snap.expires_at,
        timings=snap.timings, metadata=snap.metadata, error=error,
        links=JobLinks(status=base, events=f"{base}/events",
                       audio={fmt: f"{base}/audio?format={fmt}" for fmt in MEDIA_TYPES}),
    )


def expiry_message(record: JobRecord) -> str:
    """Why an expired job has no result: it never started in time (its stored message), or its TTL passed."""
    if record.error_code == StartExpired.code and record.error_message:
        return record.error_message
    return "the result expired and its files were deleted"


def submit(state: Services, request: Request, body: GenerateRequest, audio_prompt: Audio | None, who: str,
           job_id: str | None = None, created_status: int = 202) -> Response:
    """Enqueue and answer with the job: `created_status` for a new job, 200 for a retry of a known one."""
    record, created = enqueue(state, body, audio_prompt, who, job_id=job_id)
    status = status_of(state, request, record, live=not created)
    headers = {"Location": status.links.status}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return Response(status.model_dump_json(), media_type="application/json",
                    status_code=created_status if created else 200, headers=headers)

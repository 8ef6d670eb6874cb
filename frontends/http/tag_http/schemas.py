"""Request and response bodies of the REST API (they are the OpenAPI schema, so keep them precise)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tagcore.backend import MAX_SEED
from tagcore.messages import MAX_PROMPT_CHARS, MAX_WIRE_DURATION

OptionValue = str | int | float | bool
AudioFormat = Literal["wav", "flac", "ogg"]
MAX_START_TIMEOUT = 86400.0
START_TIMEOUT_HELP = ("seconds the job may wait for a worker to start it; one not started by then ends in state "
                      "expired (error code expired) without running. At most the server's request timeout. "
                      "Default: it waits until it runs or times out")


class GenerateRequest(BaseModel):
    """A generation request. Limits beyond these types (duration range, prompt length, options) are the
    backend's and the server's: breaking them gives 400 with a message that says what is allowed."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(max_length=MAX_PROMPT_CHARS, description="what the sound should be",
                        examples=["rain on a tin roof"])
    duration: float | None = Field(None, gt=0, le=MAX_WIRE_DURATION, allow_inf_nan=False,
                                   description="seconds; default: the server's default within the backend's range")
    backend: str | None = Field(None, max_length=100, description="backend name or alias; default: the configured one")
    seed: int | None = Field(None, ge=0, le=MAX_SEED,
                             description="same seed + same request = same sound; default: random")
    options: dict[str, OptionValue] = Field(default_factory=dict, description="request options of the backend")
    candidates: int = Field(1, ge=1, le=64, description="clips generated; the best-ranked one is returned")
    negative_prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    start_timeout: float | None = Field(None, gt=0, le=MAX_START_TIMEOUT, allow_inf_nan=False,
                                        description=START_TIMEOUT_HELP, examples=[30])


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. invalid_request, unknown_backend, rate_limited")
    message: str = Field(description="what went wrong, written for the person who sent the request")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class JobLinks(BaseModel):
    status: str
    events: str
    audio: dict[str, str] = Field(description="download URL per format (wav, flac, ogg); usable once state is done")


class JobStatus(BaseModel):
    id: str = Field(description="opaque job id (32 hex digits)")
    state: Literal["queued", "running", "done", "failed", "cancelled", "expired"] = Field(
        description="expired: the result's TTL passed and its files were deleted, or (error code expired) the job "
                    "did not start within its start_timeout")
    stage: str = Field(description="finer than state: queued, loading, generating, encoding, done, failed, "
                                   "cancelled")
    progress: float = Field(ge=0, le=1)
    position: int | None = Field(None, description="place in the backend's queue while queued (1 = next)")
    prompt: str
    duration: float = Field(description="requested duration in seconds")
    audio_seconds: float | None = Field(
        None, description="length of the delivered clip once done (speech backends may deliver less than duration)")
    channels: int | None = Field(None, description="channels of the delivered clip once done (2: stereo)")
    sample_rate: int | None = Field(None, description="sample rate of the delivered WAV/FLAC in Hz once done")
    backend: str
    seed: int | None = Field(None, description="the seed used (known once done) or requested")
    candidates: int
    model_id: str = ""
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    expires_at: float | None = Field(None, description="when the result and its files are deleted (unix time)")
    timings: dict[str, float] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    error: ErrorDetail | None = None
    links: JobLinks


class OptionInfo(BaseModel):
    name: str
    type: str
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    multiline: bool = Field(False, description="a long text over several lines (e.g. lyrics): a text area, not a line")


class DurationRange(BaseModel):
    min: float
    max: float = Field(description="longest clip, within the server's max_duration")
    native_max: float = Field(description="the model's training window")
    default: float


class BackendInfo(BaseModel):
    name: str
    aliases: list[str]
    description: str
    sample_rate: int
    channels: int = 1
    available: bool = Field(
        True, description="a worker serves it now; requests for an unavailable backend wait until one starts")
    durations: DurationRange
    capabilities: dict[str, bool | str | float]
    variable_length: bool = Field(
        False, description="the clip lasts as long as its content (speech): the duration is only an upper bound")
    options: list[OptionInfo] = Field(description="request options only; worker options are fixed by the operator")


class BackendList(BaseModel):
    default: str | None = Field(description="backend used when a request names none")
    backends: list[BackendInfo]


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        description="degraded while jobs cannot be served now (see problems)")
    problems: list[str] = Field(description="why the status is degraded, one line each (empty when ok)")
    version: str
    transport: str
    backends_served: int = Field(description="offered backends a live worker serves now")
    jobs: int = Field(description="jobs the server remembers (unfinished, finished and expired)")
    unfinished: int
    auth_required: bool

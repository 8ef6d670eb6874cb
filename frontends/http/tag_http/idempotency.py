"""Client-chosen job ids: a retried submission returns the job the first one created instead of a second job.

Two ways in: `PUT /v1/jobs/{id}` names the job id itself (like Replicate's cog), and an `Idempotency-Key`
header on `POST /v1/jobs` is turned into a job id private to the API client that sent it (the same key from two
clients gives two jobs). A retry with a different body is a client bug and gets 409 instead of the old job.
"""
from __future__ import annotations

import hashlib
import re

from tagcore.audio_types import Audio

from .schemas import GenerateRequest

CLIENT_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""What a client may choose as a job id (ids name result files, so nothing else is allowed)."""
MAX_KEY_CHARS = 255


def job_id_for_key(client: str, key: str) -> str:
    """The job id an `Idempotency-Key` stands for, scoped to the API client."""
    return hashlib.sha256(f"{client}\0{key}".encode()).hexdigest()[:32]


ADDED_FIELDS = frozenset({"start_timeout"})
"""Request fields added after fingerprints were first stored: left out of the digest while unset, so a retry
sent before an upgrade and repeated after it still matches its job."""


def fingerprint(body: GenerateRequest, audio_prompt: Audio | None) -> str:
    """A digest of everything that makes the request, so a retry can be told apart from a different request."""
    unset = {name for name in ADDED_FIELDS if getattr(body, name) is None}
    digest = hashlib.sha256(body.model_dump_json(exclude=unset or None).encode())
    if audio_prompt is not None:
        digest.update(str(audio_prompt.sample_rate).encode())
        digest.update(audio_prompt.samples.tobytes())
    return digest.hexdigest()

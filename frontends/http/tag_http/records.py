"""One job as the API reports it, and the small interface every job store backend offers.

A backend (`SqlRecords` over SQLite or PostgreSQL) holds the durable truth: records, their result audio and
their versions. `JobStore` (jobs.py) folds transport events into records through `update`, so the same rules
apply whichever process or machine receives an event. Idempotency keys need no table of their own: a key maps
to a job id (idempotency.job_id_for_key) and the record keeps the request's fingerprint for as long as the
record lives (its result TTL, then one more TTL as a tombstone).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

UNFINISHED = ("queued", "running")
FINISHED = ("done", "failed", "cancelled")


class StoreError(Exception):
    """The job store could not read or commit (database down, disk full): nothing was changed."""


@dataclass
class JobRecord:
    """Everything the API reports about one job."""

    id: str
    client: str
    prompt: str
    duration: float
    backend: str
    seed: int | None
    candidates: int
    deadline: float
    created_at: float = field(default_factory=time.time)
    state: str = "queued"
    """queued -> running -> done | failed | cancelled; those -> expired once the TTL passes. queued (or running
    on a worker that died) -> expired with error code `expired`: not started by `start_deadline`."""
    stage: str = "queued"
    progress: float = 0.0
    reported_position: int | None = None
    """The job's place in its backend's queue, as the transport reported it at `reported_at`."""
    reported_at: float | None = None
    left_queue_at: float | None = None
    """When the job left the queue (started, or ended without starting). A column too: jobs created before a
    queued one that left after its report lower its live position (see `JobRecords.left_queue`)."""
    started_at: float | None = None
    finished_at: float | None = None
    expires_at: float | None = None
    model_id: str = ""
    audio_seconds: float | None = None
    channels: int | None = None
    sample_rate: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None
    files: dict[str, Path] = field(default_factory=dict)
    """This process's cached copies of the result, by format (not stored: the store keeps the WAV itself)."""
    version: int = 0
    """Raised by one on every committed change: event-stream readers compare it to what they last sent."""
    fingerprint: str = ""
    """Digest of the submitted request (see idempotency.fingerprint): a retry must match it."""
    start_deadline: float | None = None
    """The client's start_timeout as a time: still queued then, the job expires without running."""


Change = Callable[[JobRecord], bool]
"""Edits a record in place and says whether it changed anything (False: nothing is written)."""
_NOT_STORED = ("files",)
_FIELDS = frozenset(f.name for f in fields(JobRecord))


def _jsonable(value: Any) -> Any:
    """numpy scalars from an in-process worker become plain numbers; anything else odd becomes its text."""
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


def to_json(record: JobRecord) -> str:
    """The record's fields as one JSON document (the stored form; `files` is per process and left out)."""
    data = {f.name: getattr(record, f.name) for f in fields(JobRecord) if f.name not in _NOT_STORED}
    return json.dumps(data, default=_jsonable, separators=(",", ":"))


def from_json(text: str) -> JobRecord:
    """A record from its stored form; fields this release does not know (or no longer keeps) are skipped, and
    fields it added since have their defaults."""
    data = json.loads(text)
    return JobRecord(**{key: value for key, value in data.items() if key in _FIELDS})


def copy_into(target: JobRecord, source: JobRecord) -> None:
    """Make `target` (an object the API holds) show `source`'s stored state; its cached files stay."""
    for f in fields(JobRecord):
        if f.name not in _NOT_STORED:
            setattr(target, f.name, getattr(source, f.name))


@dataclass(frozen=True)
class Limits:
    """Unfinished jobs a store accepts: in all, and per API client."""

    total: int
    per_client: int


class LimitReached(Exception):
    """A new job would break a `Limits` (`which` is "total" or "per_client"); nothing was stored."""

    def __init__(self, which: str) -> None:
        super().__init__(f"the {which} limit of unfinished jobs is reached")
        self.which = which


class JobRecords(Protocol):
    """The durable part of the job store: what several API replicas share."""

    def add(self, record: JobRecord, limits: Limits | None = None) -> tuple[JobRecord, bool]:
        """Insert `record` unless its id is known: (the new record, True) or (the stored one, False). With
        `limits`, the unfinished jobs are counted in the insert's own transaction, which excludes every other
        such insert: LimitReached when the record would break them (two submits cannot both take the last
        place, on any replica)."""

    def left_queue(self, backend: str, created_before: float, since: float) -> int:
        """Jobs for `backend` created before `created_before` that left the queue at or after `since`."""

    def unstarted(self, before: float) -> list[str]:
        """Ids of queued jobs whose start deadline is before `before`."""

    def add_waiter(self, job_id: str, stream: str) -> None:
        """A client (`stream`, unique to it) waits on the job. Not part of the record: its version is unchanged."""

    def leave_waiter(self, job_id: str, stream: str, at: float) -> None:
        """The client hung up at `at` (it may come back, as another stream, within a grace period)."""

    def drop_waiter(self, job_id: str, stream: str) -> None:
        ...

    def others_waiting(self, job_id: str, stream: str, left_since: float) -> bool:
        """Whether a client other than `stream` waits on the job, or hung up at or after `left_since`."""

    def get(self, job_id: str) -> JobRecord | None:
        ...

    def update(self, job_id: str, change: Change, wav: bytes | None = None, drop_result: bool = False,
               durable: bool = True, base: JobRecord | None = None) -> JobRecord | None:
        """Apply `change` to the stored record and commit it with version + 1 (retried when another writer
        committed in between); with `wav`, the result audio is committed in the same transaction, and with
        `drop_result` it is deleted in it. A change that is not `durable` (progress) may return before the
        disk has it. `base`, a private copy of the record as last seen, saves the first read (it is read anew
        when the stored version moved on). None when the job is unknown."""

    def delete(self, job_id: str) -> None:
        ...

    def versions(self, job_ids: Iterable[str]) -> dict[str, int]:
        """The stored version of each known id (unknown ids are left out): what event streams poll."""

    def states(self, job_ids: Iterable[str]) -> dict[str, str]:
        ...

    def count(self, states: tuple[str, ...] = (), client: str | None = None) -> int:
        """Jobs in any of `states` (all when empty), of one API client when `client` is given."""

    def due(self, now: float, grace: float) -> list[str]:
        """Ids the sweep must look at: finished and past `expires_at`, or unfinished and `grace` past the
        deadline."""

    def drop_tombstones(self, before: float) -> int:
        """Delete expired records whose `expires_at` is at or before `before`; how many went."""

    def result(self, job_id: str) -> bytes | None:
        """The result WAV, or None (not done, expired, unknown)."""

    def close(self) -> None:
        ...

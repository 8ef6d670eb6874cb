"""How transport events and the sweep change a job record: pure edits, committed by the store's `update`.

Each function edits the record in place and returns whether it changed anything, so the store writes (and
wakes event streams) only for real changes, and a change that lost a race is simply applied again to the newer
record. A finished job is final: late events from a worker (after a cancel or a time-out) change nothing.
"""
from __future__ import annotations

from tagcore.errors import StartExpired
from tagcore.messages import ProgressEvent, SoundResponse

from .records import FINISHED, UNFINISHED, Change, JobRecord


def progress(event: ProgressEvent, now: float) -> Change:
    def change(record: JobRecord) -> bool:
        if record.state not in UNFINISHED:
            return False
        if event.stage == "queued":
            if record.state != "queued":  # a worker may have started before the queued event arrived
                return False
            record.reported_position, record.reported_at = event.position, now
        else:
            if record.state == "queued":
                record.state, record.started_at = "running", now
            record.stage = event.stage
            record.progress = max(0.0, min(1.0, float(event.fraction)))
        return True

    return change


def done(response: SoundResponse, ttl: float, now: float) -> Change:
    """The worker's audio arrived (the WAV itself is committed beside the record)."""
    audio = response.audio
    assert audio is not None

    def change(record: JobRecord) -> bool:
        if record.state not in UNFINISHED:
            return False
        record.audio_seconds = round(audio.duration, 3)
        record.channels, record.sample_rate = audio.channels, audio.sample_rate
        record.state, record.stage, record.progress = "done", "done", 1.0
        record.seed = response.seed
        record.model_id = response.model_id
        record.timings = dict(response.timings)
        record.metadata = dict(response.metadata)
        record.finished_at, record.expires_at = now, now + ttl
        return True

    return change


def failed(code: str, message: str, ttl: float, now: float) -> Change:
    def change(record: JobRecord) -> bool:
        if record.state not in UNFINISHED:
            return False
        record.state, record.stage = "failed", "failed"
        record.error_code, record.error_message = code, message
        record.finished_at, record.expires_at = now, now + ttl
        return True

    return change


def cancelled(ttl: float, now: float) -> Change:
    def change(record: JobRecord) -> bool:
        if record.state not in UNFINISHED:
            return False
        record.state, record.stage = "cancelled", "cancelled"
        record.finished_at, record.expires_at = now, now + ttl
        return True

    return change


def not_started(message: str, now: float) -> Change:
    """The job did not start by its start deadline (a worker answered so, or the sweep found it still queued):
    expired at once, with nothing to keep, its record a tombstone for one more TTL (an `expired` error code tells
    it from a result whose TTL passed)."""
    def change(record: JobRecord) -> bool:
        if record.state not in UNFINISHED:
            return False
        record.state, record.stage = "expired", "expired"
        record.error_code, record.error_message = StartExpired.code, message
        record.finished_at, record.expires_at = now, now
        return True

    return change


def expired(now: float) -> Change:
    """A finished job's TTL passed: its audio goes (the caller drops it in the same transaction)."""
    def change(record: JobRecord) -> bool:
        if record.state not in FINISHED or record.expires_at is None or now < record.expires_at:
            return False
        record.state = "expired"
        return True

    return change

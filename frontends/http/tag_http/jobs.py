"""The server's memory of jobs: state from transport events, result files with a time to live.

The store is a transport listener, so it works the same whether the worker runs in this process or in a remote
pool. Result files are named only from job ids this server generated (uuid hex); user input never reaches a path.
Event-stream readers wait on asyncio events that transport threads wake through the server's event loop.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tagcore import audio as audio_io
from tagcore.messages import ProgressEvent, SoundRequest, SoundResponse
from tagcore.transport import Event

from .idempotency import CLIENT_JOB_ID

log = logging.getLogger(__name__)
TERMINAL = ("done", "failed", "cancelled", "expired")
TIMEOUT_GRACE = 60.0
"""Seconds past a request's deadline before the server stops waiting for its answer."""


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
    """queued -> running -> done | failed | cancelled; those -> expired once the TTL passes."""
    stage: str = "queued"
    progress: float = 0.0
    reported_position: int | None = None
    ahead: frozenset[str] = frozenset()
    """This server's jobs for the same backend that were queued before this one (for a live position)."""
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
    version: int = 0
    fingerprint: str = ""
    """Digest of the submitted request (see idempotency.fingerprint): a retry must match it."""


class JobStore:
    """Thread-safe job records and result files; call `close` to delete everything it wrote."""

    def __init__(self, result_ttl: float, results_dir: str = "") -> None:
        self.result_ttl = result_ttl
        self._own_dir = not results_dir
        self.dir = Path(results_dir or tempfile.mkdtemp(prefix="tag-http-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._jobs: dict[str, JobRecord] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self.closed = False
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    # --- life cycle ---------------------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind to the server's event loop and start the thread that expires results."""
        self._loop = loop
        self._sweeper = threading.Thread(target=self._sweep_forever, name="tag-http-sweeper", daemon=True)
        self._sweeper.start()

    def close(self) -> None:
        """End every event stream, stop the sweeper and delete the result files."""
        self.closed = True
        self._stop.set()
        self._wake_all()
        if self._sweeper is not None:
            self._sweeper.join(timeout=5)
        with self._lock:
            for record in self._jobs.values():
                self._delete_files(record)
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def sweep_interval(self) -> float:
        return min(30.0, max(0.2, self.result_ttl / 4))

    def _sweep_forever(self) -> None:
        while not self._stop.wait(self.sweep_interval()):
            try:
                self.sweep()
            except Exception:  # the sweeper must outlive any single bad record
                log.exception("result sweep failed")

    def sweep(self, now: float | None = None) -> None:
        """Expire results past their TTL (files deleted), give up on unanswered jobs, drop old tombstones."""
        now = time.time() if now is None else now
        with self._lock:
            for record in list(self._jobs.values()):
                if record.state in ("done", "failed", "cancelled") and record.expires_at is not None and now >= record.expires_at:
                    self._delete_files(record)
                    record.state = "expired"
                    self._changed(record)
                elif record.state == "expired" and now >= (record.expires_at or now) + self.result_ttl:
                    del self._jobs[record.id]
                elif record.state in ("queued", "running") and now > record.deadline + TIMEOUT_GRACE:
                    self._finish_failed(record, "timed_out", "no worker answered in time; try again later", now)

    # --- submitting and reading -----------------------------------------------------------------------------
    def add(self, request: SoundRequest, client: str, fingerprint: str = "") -> tuple[JobRecord, bool]:
        """Record a request before it is submitted (in-process transports answer during `submit`); with an id
        already known, the existing record and False (a retry: nothing must be submitted again)."""
        with self._lock:
            existing = self._jobs.get(request.request_id)
            if existing is not None:
                return existing, False
            ahead = frozenset(j.id for j in self._jobs.values()
                              if j.state == "queued" and j.backend == request.backend)
            record = JobRecord(id=request.request_id, client=client, prompt=request.prompt,
                               duration=request.duration, backend=request.backend, seed=request.seed,
                               candidates=request.candidates, deadline=request.deadline or time.time(),
                               ahead=ahead, fingerprint=fingerprint)
            self._jobs[record.id] = record
            return record, True

    def discard(self, job_id: str) -> None:
        """Forget a job whose submission failed (the transport refused it)."""
        with self._lock:
            self._jobs.pop(job_id, None)

    def cancel(self, record: JobRecord) -> bool:
        """Mark an unfinished job cancelled at once (a late answer from a worker is then ignored); False when
        it had already finished."""
        with self._lock:
            if record.state == "cancelled":
                return True
            if record.state not in ("queued", "running"):
                return False
            now = time.time()
            record.state, record.stage = "cancelled", "cancelled"
            record.finished_at, record.expires_at = now, now + self.result_ttl
            self._changed(record)
            return True

    def get(self, job_id: str) -> JobRecord | None:
        if not CLIENT_JOB_ID.match(job_id):
            return None
        with self._lock:
            return self._jobs.get(job_id)

    def position(self, record: JobRecord) -> int | None:
        """The transport's queue position, lowered for each of our own earlier jobs that has left the queue."""
        with self._lock:
            if record.state != "queued" or record.reported_position is None:
                return None
            gone = sum(1 for j in record.ahead if (other := self._jobs.get(j)) is None or other.state != "queued")
            return max(1, record.reported_position - gone)

    def snapshot(self, record: JobRecord) -> tuple[JobRecord, int | None]:
        """A consistent copy of `record` and its live queue position, safe to read while events arrive."""
        with self._lock:
            copy = dataclasses.replace(record, timings=dict(record.timings), metadata=dict(record.metadata),
                                       files=dict(record.files))
            return copy, self.position(record)

    def unfinished(self, client: str | None = None) -> int:
        with self._lock:
            return sum(1 for j in self._jobs.values()
                       if j.state in ("queued", "running") and (client is None or j.client == client))

    def count(self) -> int:
        with self._lock:
            return len(self._jobs)

    def result_bytes(self, record: JobRecord, fmt: str) -> bytes | None:
        """The result encoded as `fmt` (converted from the stored WAV once, then cached); None once expired."""
        with self._lock:
            if record.state != "done" or "wav" not in record.files:
                return None
            path = record.files.get(fmt)
            if path is None:
                audio = audio_io.read(record.files["wav"])
                path = self.dir / f"{record.id}.{fmt}"
                path.write_bytes(audio_io.encode(audio, fmt))
                record.files[fmt] = path
            return path.read_bytes()

    # --- transport events ---------------------------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        """Transport listener: fold a progress event or a response into its record."""
        if isinstance(event, SoundResponse):
            self._on_response(event)
        else:
            self._on_progress(event)

    def _on_progress(self, event: ProgressEvent) -> None:
        with self._lock:
            record = self._jobs.get(event.request_id)
            if record is None or record.state not in ("queued", "running"):
                return
            if event.stage == "queued":
                if record.state == "queued":  # a worker may have started before the queued event arrived
                    record.reported_position = event.position
            else:
                if record.state == "queued":
                    record.state = "running"
                    record.started_at = time.time()
                record.stage = event.stage
                record.progress = max(0.0, min(1.0, float(event.fraction)))
            self._changed(record)

    def _on_response(self, response: SoundResponse) -> None:
        now = time.time()
        with self._lock:
            record = self._jobs.get(response.request_id)
            if record is None:
                if not CLIENT_JOB_ID.match(response.request_id):
                    return
                # An answer to a job submitted before this server restarted: keep it for whoever still polls.
                record = JobRecord(id=response.request_id, client="", prompt=response.prompt,
                                   duration=response.duration, backend=response.backend, seed=response.seed,
                                   candidates=1, deadline=now)
                self._jobs[record.id] = record
            elif record.state not in ("queued", "running"):
                return
            if not response.ok or response.audio is None:
                self._finish_failed(record, response.error_code or "generation_failed",
                                    response.error_message or "the worker reported an error", now)
                return
            try:
                path = self.dir / f"{record.id}.wav"
                path.write_bytes(audio_io.encode(response.audio, "wav"))
            except Exception as exc:
                log.exception("could not store the result of %s", record.id)
                self._finish_failed(record, "storage_failed", f"the server could not store the result: {exc}", now)
                return
            record.files = {"wav": path}
            record.audio_seconds = round(response.audio.duration, 3)
            record.channels, record.sample_rate = response.audio.channels, response.audio.sample_rate
            record.state, record.stage, record.progress = "done", "done", 1.0
            record.seed = response.seed
            record.model_id = response.model_id
            record.timings = dict(response.timings)
            record.metadata = dict(response.metadata)
            record.finished_at = now
            record.expires_at = now + self.result_ttl
            self._changed(record)

    def _finish_failed(self, record: JobRecord, code: str, message: str, now: float) -> None:
        record.state, record.stage = "failed", "failed"
        record.error_code, record.error_message = code, message
        record.finished_at = now
        record.expires_at = now + self.result_ttl
        self._changed(record)

    def _delete_files(self, record: JobRecord) -> None:
        for path in record.files.values():
            path.unlink(missing_ok=True)
        record.files = {}

    # --- change notification ------------------------------------------------------------------------------
    def _changed(self, record: JobRecord) -> None:
        record.version += 1
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._wake, record.id)
            except RuntimeError:  # the loop stopped between the check and the call
                pass

    def _wake(self, job_id: str) -> None:
        for waiter in self._waiters.get(job_id, ()):
            waiter.set()

    def _set_every_waiter(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.set()

    def _wake_all(self) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        try:
            self._loop.call_soon_threadsafe(self._set_every_waiter)
        except RuntimeError:
            pass

    async def wait_for_change(self, record: JobRecord, seen_version: int, timeout: float) -> None:
        """Return once `record` moves past `seen_version`, the store closes, or `timeout` passes."""
        if record.version != seen_version or self.closed:
            return
        waiter = asyncio.Event()
        self._waiters.setdefault(record.id, set()).add(waiter)
        try:
            await asyncio.wait_for(waiter.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(record.id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[record.id]

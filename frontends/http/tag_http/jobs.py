"""The server's view of jobs: a durable store shared by API replicas, folded from transport events.

The store is a transport listener, so it works the same whether the worker runs in this process or in a remote
pool, and whichever replica receives an event. The records and the result audio live in a `JobRecords`
backend (SQLite file or PostgreSQL, chosen by URL); this object adds what is per process: the record objects
the routes hold (kept current in place), a folder caching encoded results, the sweeper that expires results,
and the waiters of event streams. A stream is woken at once by a change this process commits, and by a poll
of the stored versions (every `poll_interval` seconds) for changes other replicas commit. Cached files are
named only from job ids (CLIENT_JOB_ID); user input never reaches a path.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tagcore import audio as audio_io
from tagcore.errors import StartExpired
from tagcore.messages import ProgressEvent, SoundRequest, SoundResponse
from tagcore.transport import Event

from . import folding
from .idempotency import CLIENT_JOB_ID
from .records import FINISHED, UNFINISHED, Change, JobRecord, JobRecords, Limits, StoreError, copy_into
from .sqlrecords import SqlRecords

__all__ = ["JobRecord", "JobStore", "StoreError", "TERMINAL", "TIMEOUT_GRACE"]
log = logging.getLogger(__name__)
TERMINAL = (*FINISHED, "expired")
TIMEOUT_GRACE = 60.0
"""Seconds past a request's deadline before the server stops waiting for its answer."""
START_GRACE = 2.0
"""Seconds past a start deadline before a job still queued here expires: a worker's own check decides for a job it
takes, and the first progress event of one it started just in time may still be on its way."""
START_CHECK_S = 0.5
"""How often queued jobs are checked against their start deadlines."""
FORMATS = ("wav", "flac", "ogg")


class JobStore:
    """Thread-safe job records over a durable backend; `close` deletes what is private to this process.

    `url` names the backend (see dialects.dialect_for); empty means a private SQLite file deleted by `close`
    (for tests and embedding). `results_dir` is where encoded results are cached; empty means a private
    temporary folder. The store's TTLs are `result_ttl` for results and another `result_ttl` for the
    tombstone of an expired job (so its id still answers 410, and its Idempotency-Key still finds it).
    """

    def __init__(self, result_ttl: float, results_dir: str = "", url: str = "", poll_interval: float = 0.1) -> None:
        self.result_ttl = result_ttl
        self.poll_interval = poll_interval
        self._private_db = None if url else Path(tempfile.mkdtemp(prefix="tag-http-store-"))
        self.records: JobRecords = SqlRecords(url or f"sqlite:///{self._private_db}/jobs.sqlite")
        self._own_dir = not results_dir
        self.dir = Path(results_dir or tempfile.mkdtemp(prefix="tag-http-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._live: weakref.WeakValueDictionary[str, JobRecord] = weakref.WeakValueDictionary()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tell_workers: Callable[[str], None] | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self.closed = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- life cycle ---------------------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop, tell_workers: Callable[[str], None] | None = None) -> None:
        """Bind to the server's event loop; start the threads that expire results and unstarted jobs and poll
        for changes. `tell_workers(job_id)` asks the workers to drop a job that expired before it started."""
        self._loop = loop
        self._tell_workers = tell_workers
        for target, name in ((self._sweep_forever, "tag-http-sweeper"), (self._poll_forever, "tag-http-poller"),
                             (self._expire_unstarted_forever, "tag-http-start-deadlines")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        """End every event stream, stop the threads, delete the private cache (and private database)."""
        self.closed = True
        self._stop.set()
        self._wake_all()
        for thread in self._threads:
            thread.join(timeout=5)
        self.records.close()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        if self._private_db is not None:
            shutil.rmtree(self._private_db, ignore_errors=True)

    def sweep_interval(self) -> float:
        return min(30.0, max(0.2, self.result_ttl / 4))

    def _sweep_forever(self) -> None:
        while not self._stop.wait(self.sweep_interval()):
            try:
                self.sweep()
            except Exception:  # the sweeper must outlive any single bad record or database outage
                log.exception("result sweep failed")

    def sweep(self, now: float | None = None) -> None:
        """Expire results past their TTL, give up on unanswered jobs, drop old tombstones, clean the cache.
        Safe on several replicas at once: every change is a conditional update of the stored record."""
        now = time.time() if now is None else now
        ttl = self.result_ttl
        for job_id in self.records.due(now, TIMEOUT_GRACE):
            expire = folding.expired(now)
            give_up = folding.failed("timed_out", "no worker answered in time; try again later", ttl, now)

            def change(record: JobRecord) -> bool:
                return expire(record) or (now > record.deadline + TIMEOUT_GRACE and give_up(record))

            self._commit(job_id, change, drop_result=True)
        self.records.drop_tombstones(now - ttl)
        self._clean_cache()

    def _expire_unstarted_forever(self) -> None:
        while not self._stop.wait(START_CHECK_S):
            try:
                self.expire_unstarted()
            except Exception:  # like the sweeper: a database outage must not end the checks
                log.exception("start deadline check failed")

    def expire_unstarted(self, now: float | None = None) -> list[str]:
        """Expire the jobs still queued START_GRACE past their start deadline, even when no worker ever takes
        them, and ask the workers to drop each (so one that takes it later does not run it); the ids expired
        here. Safe on several replicas at once: only the replica whose change commits tells the workers."""
        now = time.time() if now is None else now
        expired = []
        for job_id in self.records.unstarted(now - START_GRACE):
            applied = False

            def change(record: JobRecord) -> bool:
                nonlocal applied
                applied = False  # a retried change starts over on a newer record
                if record.state == "queued":
                    allowed = (record.start_deadline or now) - record.created_at
                    applied = folding.not_started(StartExpired.after(allowed).message, now)(record)
                return applied

            self._commit(job_id, change)
            if applied:
                expired.append(job_id)
                self._drop_on_workers(job_id)
        return expired

    def _drop_on_workers(self, job_id: str) -> None:
        if self._tell_workers is None:
            return
        try:
            self._tell_workers(job_id)
        except Exception:  # the job is finished here whatever a worker does with it
            log.warning("could not tell the workers to drop job %s", job_id, exc_info=True)

    def _clean_cache(self) -> None:
        """Delete cached files of jobs no longer done (expired here or on another replica, or forgotten)."""
        cached: dict[str, list[Path]] = {}
        for path in self.dir.iterdir():
            cached.setdefault(path.name.split(".")[0], []).append(path)
        states = self.records.states(cached)
        for job_id, paths in cached.items():
            if states.get(job_id) != "done":
                for path in paths:
                    path.unlink(missing_ok=True)
                with self._lock:
                    if (live := self._live.get(job_id)) is not None:
                        live.files = {}

    # --- submitting and reading -----------------------------------------------------------------------------
    def add(self, request: SoundRequest, client: str, fingerprint: str = "",
            limits: Limits | None = None) -> tuple[JobRecord, bool]:
        """Record a request before it is submitted (in-process transports answer during `submit`); with an id
        already known, the existing record and False (a retry: nothing must be submitted again). With `limits`,
        LimitReached instead when the new job would break them (counted in the insert's transaction)."""
        record = JobRecord(id=request.request_id, client=client, prompt=request.prompt,
                           duration=request.duration, backend=request.backend, seed=request.seed,
                           candidates=request.candidates, deadline=request.deadline or time.time(),
                           fingerprint=fingerprint, start_deadline=request.start_deadline)
        stored, created = self.records.add(record, limits)
        return self._track(stored), created

    def discard(self, job_id: str) -> None:
        """Forget a job whose submission failed (the transport refused it)."""
        self.records.delete(job_id)

    def cancel(self, record: JobRecord) -> bool:
        """Mark an unfinished job cancelled at once (a late answer from a worker is then ignored); False when
        it had already finished."""
        stored = self._commit(record.id, folding.cancelled(self.result_ttl, time.time()))
        return stored is not None and stored.state == "cancelled"

    def abandon(self, record: JobRecord) -> bool:
        """Cancel an unfinished job here and ask the workers to drop it (best effort: a worker that does not
        hear of it delivers a result that is then ignored); False when it had finished."""
        if not self.cancel(record):
            return False
        self._drop_on_workers(record.id)
        return True

    def get(self, job_id: str) -> JobRecord | None:
        """The job as stored now (the same object on every call while someone holds it, updated in place)."""
        if not CLIENT_JOB_ID.match(job_id):
            return None
        stored = self.records.get(job_id)
        return None if stored is None else self._track(stored)

    def position(self, record: JobRecord) -> int | None:
        """The transport's queue position, lowered for each job created before this one (in this store) that
        left the queue after the transport reported it."""
        if record.state != "queued" or record.reported_position is None:
            return None
        since = record.reported_at if record.reported_at is not None else record.created_at
        left = self.records.left_queue(record.backend, record.created_at, since)
        return max(1, record.reported_position - left)

    def snapshot(self, record: JobRecord, live: bool = True) -> tuple[JobRecord, int | None]:
        """A consistent copy of `record` and its queue position, safe to read while events arrive: live, or
        (`live=False`, for a job just submitted) as the transport reported it, with no query."""
        with self._lock:
            copy = self._copy(record)
        if live:
            return copy, self.position(copy)
        return copy, copy.reported_position if copy.state == "queued" else None

    @staticmethod
    def _copy(record: JobRecord) -> JobRecord:
        """A copy whose mutable fields are its own (callers hold the lock)."""
        return dataclasses.replace(record, timings=dict(record.timings), metadata=dict(record.metadata),
                                   files=dict(record.files))

    def unfinished(self, client: str | None = None) -> int:
        return self.records.count(UNFINISHED, client)

    def count(self) -> int:
        return self.records.count()

    def result_bytes(self, record: JobRecord, fmt: str) -> bytes | None:
        """The result encoded as `fmt` (converted from the stored WAV once per process, then cached); None
        once expired."""
        if record.state != "done" or fmt not in FORMATS:
            return None
        path = self.dir / f"{record.id}.{fmt}"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            wav = self.records.result(record.id)
            if wav is None:
                return None
            data = wav if fmt == "wav" else audio_io.encode(audio_io.decode(wav), fmt)
            self._cache(record, fmt, data)
        return data

    def _cache(self, record: JobRecord, fmt: str, data: bytes) -> None:
        path = self._cache_file(record.id, fmt, data)
        if path is not None:
            with self._lock:
                record.files[fmt] = path

    def _cache_file(self, job_id: str, fmt: str, data: bytes) -> Path | None:
        """Keep an encoded copy (written aside and renamed, so a concurrent reader never sees half a file)."""
        path = self.dir / f"{job_id}.{fmt}"
        try:
            partial = path.with_name(f"{path.name}.part")
            partial.write_bytes(data)
            partial.replace(path)
        except OSError:
            log.warning("could not cache %s (it is served from the store)", path, exc_info=True)
            return None
        return path

    # --- transport events ---------------------------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        """Transport listener: fold a progress event or a response into its record. Returns once the change is
        committed; raises StoreError when the store cannot commit it (the answer must then not be acked)."""
        now = time.time()
        if isinstance(event, SoundResponse):
            self._on_response(event, now)
        else:
            self._commit(event.request_id, folding.progress(event, now), durable=False)

    def _on_response(self, response: SoundResponse, now: float) -> None:
        if not CLIENT_JOB_ID.match(response.request_id):
            return
        ttl = self.result_ttl
        if response.error_code == StartExpired.code:
            self._commit_answer(response, folding.not_started(response.error_message or "", now))
            return
        if not response.ok or response.audio is None:
            self._commit_answer(response, folding.failed(
                response.error_code or "generation_failed", response.error_message or "the worker reported an error",
                ttl, now))
            return
        try:
            wav = audio_io.encode(response.audio, "wav")
        except Exception as exc:  # bad audio from a worker fails the job; a store failure (below) raises
            log.exception("could not encode the result of %s", response.request_id)
            self._commit_answer(response, folding.failed(
                "storage_failed", f"the server could not store the result: {exc}", ttl, now))
            return
        cached = self._cache_file(response.request_id, "wav", wav)  # before the wake: readers find the file
        stored = self._commit_answer(response, folding.done(response, ttl, now), wav=wav,
                                     files={"wav": cached} if cached else None)
        if cached is not None and stored.state != "done":
            cached.unlink(missing_ok=True)  # a late answer for a job that had finished otherwise

    def _commit_answer(self, response: SoundResponse, change: Change, **options: Any) -> JobRecord:
        """Commit an answer; one for a job the store does not know (discarded, or dropped by another TAG) is
        kept under its id for whoever still polls it."""
        stored = self._commit(response.request_id, change, **options)
        if stored is None:
            self.records.add(JobRecord(id=response.request_id, client="", prompt=response.prompt,
                                       duration=response.duration, backend=response.backend, seed=response.seed,
                                       candidates=1, deadline=time.time()))
            stored = self._commit(response.request_id, change, **options)
        if stored is None:
            raise StoreError(f"job {response.request_id} vanished while its answer was stored")
        return stored

    def _commit(self, job_id: str, change: Change, wav: bytes | None = None, drop_result: bool = False,
                files: dict[str, Path] | None = None, durable: bool = True) -> JobRecord | None:
        """Apply `change` in the store, bring the live record up to date (with cached `files` once done) and
        wake its event streams."""
        with self._lock:
            seen = self._live.get(job_id)
            base, before = (None, None) if seen is None else (self._copy(seen), seen.version)
        stored = self.records.update(job_id, change, wav=wav, drop_result=drop_result, durable=durable, base=base)
        if stored is None:
            return None
        live = self._track(stored)
        if files and live.state == "done":
            with self._lock:
                live.files.update(files)
        if live.version != before:
            self._wake_threadsafe(job_id)
        return live

    def _track(self, stored: JobRecord) -> JobRecord:
        """The one object this process hands out for `stored.id`, brought up to `stored`'s state."""
        with self._lock:
            live = self._live.get(stored.id)
            if live is None:  # only a done job has files in the cache (the sweep deletes the others')
                paths = (self.dir / f"{stored.id}.{fmt}" for fmt in FORMATS) if stored.state == "done" else ()
                stored.files = {path.suffix[1:]: path for path in paths if path.exists()}
                self._live[stored.id] = stored
                return stored
            if stored.version >= live.version:
                copy_into(live, stored)
                if live.state != "done":
                    live.files = {}
            return live

    # --- change notification ------------------------------------------------------------------------------
    def _poll_forever(self) -> None:
        """Refresh the records event streams wait on whenever another process committed a change."""
        while not self._stop.wait(self.poll_interval):
            with self._lock:
                watched = {job_id: live.version for job_id in self._waiters
                           if (live := self._live.get(job_id)) is not None}
            if not watched:
                continue
            try:
                versions = self.records.versions(watched)
                for job_id, version in watched.items():
                    if versions.get(job_id, version) != version and (stored := self.records.get(job_id)):
                        self._track(stored)
                        self._wake_threadsafe(job_id)
            except StoreError:
                log.warning("could not poll the job store for changes", exc_info=True)

    def _wake_threadsafe(self, job_id: str) -> None:
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._wake, job_id)
            except RuntimeError:  # the loop stopped between the check and the call
                pass

    def _wake(self, job_id: str) -> None:
        for waiter in self._waiters.get(job_id, ()):
            waiter.set()

    def _wake_everyone(self) -> None:
        for job_id in list(self._waiters):
            self._wake(job_id)

    def _wake_all(self) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        try:
            self._loop.call_soon_threadsafe(self._wake_everyone)
        except RuntimeError:
            pass

    async def wait_for_change(self, record: JobRecord, seen_version: int, timeout: float) -> None:
        """Return once `record` moves past `seen_version`, the store closes, or `timeout` passes."""
        if record.version != seen_version or self.closed:
            return
        waiter = asyncio.Event()
        with self._lock:
            self._waiters.setdefault(record.id, set()).add(waiter)
        try:
            await asyncio.wait_for(waiter.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._lock:
                waiters = self._waiters.get(record.id)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del self._waiters[record.id]

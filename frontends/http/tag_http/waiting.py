"""Clients waiting on jobs, and the cancel once the last of them hangs up.

An event stream (`GET /v1/jobs/{id}/events`) or a `POST /v1/audio/speech` call waits on its job; polling
`GET /v1/jobs/{id}` never does, so a job that is only polled is never cancelled by a poll ending. When a waiting
client hangs up before its job finished, the job is cancelled unless another client waits on it, on any replica.
Who waits is kept in the store's `waiters` table (one row per stream, beside the job record, whose version drives
the event streams). A stream that hangs up is marked as left and the decision waits `grace` seconds, during which
a stream that reconnects (a browser's EventSource does so by itself, to whichever replica) keeps the job. A speech
caller cannot come back to its response, so its decision is made at once (a stream that left within the grace
still counts: it may be reconnecting). Rows a killed replica leaves behind can only keep a job from being
cancelled, never cancel one; they are deleted with the job.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import Awaitable
from typing import Any

from .jobs import JobStore
from .records import UNFINISHED

log = logging.getLogger(__name__)


class Waiting:
    """This replica's waiting clients and their hang-ups, over a job store."""

    def __init__(self, store: JobStore, grace: float) -> None:
        self.store = store
        self.grace = grace
        self._lock = threading.Lock()
        self._active: dict[str, str] = {}
        """stream -> job id, for the streams open here (marked as left when this replica stops)."""
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def retry_ms(self) -> int:
        """The reconnection delay an event stream asks its client for: well within the grace."""
        return max(100, int(self.grace * 500))

    def new_stream(self, job_id: str) -> str:
        """An id for a client about to wait on `job_id` (for `begin` and `end`; `end` it even when `begin` was
        interrupted)."""
        stream = secrets.token_hex(8)
        with self._lock:
            self._active[stream] = job_id
        return stream

    async def begin(self, job_id: str, stream: str) -> None:
        """Record that the client `stream` waits on `job_id`."""
        await asyncio.to_thread(self.store.records.add_waiter, job_id, stream)

    def end(self, job_id: str, stream: str, hung_up: bool, delay: float | None = None) -> None:
        """The client stopped waiting: because its job finished or the server stops (`hung_up` False: its row
        goes), or because it hung up first. Then, after `delay` (default: the grace), the job is cancelled if no
        other client waits on it. Not a coroutine: it is called from the `finally` of a stream that the server
        cancelled, where nothing can be awaited any more; the work runs in a task of its own."""
        with self._lock:
            self._active.pop(stream, None)
        if self.store.closed:
            return  # `close` marked the rows already
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no running loop: the server is gone, and so is the decision
            return
        work = (self._after_hang_up(job_id, stream, self.grace if delay is None else delay) if hung_up
                else asyncio.to_thread(self.store.records.drop_waiter, job_id, stream))
        task = loop.create_task(self._logged(work, job_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _logged(work: Awaitable[None], job_id: str) -> None:
        try:
            await work
        except Exception:  # a store outage costs this decision (the job runs on), never the server
            log.warning("could not follow up a client of job %s that stopped waiting", job_id, exc_info=True)

    async def _after_hang_up(self, job_id: str, stream: str, delay: float) -> None:
        await asyncio.to_thread(self.store.records.leave_waiter, job_id, stream, time.time())
        if delay > 0:
            await asyncio.sleep(delay)
        await asyncio.to_thread(self._cancel_unless_awaited, job_id, stream)

    def _cancel_unless_awaited(self, job_id: str, stream: str) -> None:
        records = self.store.records
        awaited = records.others_waiting(job_id, stream, time.time() - self.grace)
        records.drop_waiter(job_id, stream)
        if awaited:
            return
        record = self.store.get(job_id)
        if record is not None and record.state in UNFINISHED and self.store.abandon(record):
            log.info("cancelled job %s: its last waiting client hung up", job_id)

    def close(self) -> None:
        """This replica stops: its streams count as left now (their clients may reconnect to another replica
        within the grace; if none does, nothing here is left to cancel the job, so it runs on)."""
        with self._lock:
            active = list(self._active.items())
            self._active.clear()
        now = time.time()
        for stream, job_id in active:
            try:
                self.store.records.leave_waiter(job_id, stream, now)
            except Exception:
                log.warning("could not mark the stream on job %s as left", job_id, exc_info=True)

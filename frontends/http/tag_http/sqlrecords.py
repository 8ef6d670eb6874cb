"""`JobRecords` in SQL: one implementation for SQLite and PostgreSQL (their differences live in dialects.py).

A record is stored as one JSON document plus the few columns the queries filter on. Changes are optimistic:
read the record, apply the change in Python, write it back only if its version is still the one read (else
read again), so no lock is held across Python code and two replicas folding events for one job never lose
each other's writes.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from .dialects import Connection, Dialect, Pool, dialect_for
from .migrations import migrate
from .records import FINISHED, UNFINISHED, Change, JobRecord, LimitReached, Limits, StoreError, from_json, to_json

MAX_RETRIES = 50
"""Optimistic retries of one change before giving up (each one means another writer committed meanwhile)."""
CHUNK = 500
"""Ids per `IN (...)` list, within every database's limit on bound parameters."""


def _marks(count: int) -> str:
    return ", ".join("?" * count)


class SqlRecords:
    """Job records and results in the database `url` names; the schema is migrated on open."""

    def __init__(self, url: str) -> None:
        self.dialect: Dialect = dialect_for(url)
        self.pool = Pool(self.dialect)
        with self.pool.connection() as conn:
            self.applied = migrate(self.dialect, conn)

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self.pool.connection() as conn:
            rows: list[Any] = conn.execute(self.dialect.sql(sql), params).fetchall()
            return rows

    def _chunks(self, sql: str, ids: Iterable[str], extra: Sequence[Any] = ()) -> list[Any]:
        """`sql` with `{ids}` as an IN list, run for every CHUNK ids."""
        wanted, rows = sorted(set(ids)), []
        for start in range(0, len(wanted), CHUNK):
            part = wanted[start:start + CHUNK]
            rows += self._all(sql.format(ids=_marks(len(part))), (*extra, *part))
        return rows

    # --- records ------------------------------------------------------------------------------------------
    def add(self, record: JobRecord, limits: Limits | None = None) -> tuple[JobRecord, bool]:
        broken = ""
        with self.pool.connection() as conn, self.dialect.write(conn):
            if limits is not None:
                self.dialect.lock_submissions(conn)
                broken = self._broken(conn, limits, record.client)
            created = not broken and self._insert(conn, record)
        if broken:  # raised here, not in the block: the pool keeps the connection
            raise LimitReached(broken)
        if created:
            return record, True
        stored = self.get(record.id)
        if stored is None:  # inserted by someone else and deleted again in between: a rare race, try once more
            return self.add(record, limits)
        return stored, False

    def _insert(self, conn: Connection, record: JobRecord) -> bool:
        """Insert `record` unless its id is taken; whether it was inserted."""
        cursor = conn.execute(self.dialect.sql(
            "INSERT INTO jobs (id, client, state, backend, deadline, expires_at, version, record, created_at,"
            " left_queue_at, start_deadline) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"),
            (record.id, record.client, record.state, record.backend, record.deadline, record.expires_at,
             record.version, to_json(record), record.created_at, record.left_queue_at, record.start_deadline))
        return bool(cursor.rowcount == 1)

    def _broken(self, conn: Connection, limits: Limits, client: str) -> str:
        """The limit one more unfinished job of `client` would break ("" for none), from one scan of the
        unfinished jobs."""
        total, mine = conn.execute(self.dialect.sql(
            f"SELECT count(*), count(CASE WHEN client = ? THEN 1 END) FROM jobs"
            f" WHERE state IN ({_marks(len(UNFINISHED))})"), (client, *UNFINISHED)).fetchone()
        return "total" if total >= limits.total else "per_client" if mine >= limits.per_client else ""

    def left_queue(self, backend: str, created_before: float, since: float) -> int:
        return int(self._all("SELECT count(*) FROM jobs WHERE backend = ? AND left_queue_at >= ? AND created_at < ?",
                             (backend, since, created_before))[0][0])

    def unstarted(self, before: float) -> list[str]:
        return [row[0] for row in self._all("SELECT id FROM jobs WHERE state = 'queued' AND start_deadline < ?",
                                            (before,))]

    def get(self, job_id: str) -> JobRecord | None:
        rows = self._all("SELECT record FROM jobs WHERE id = ?", (job_id,))
        return from_json(rows[0][0]) if rows else None

    def update(self, job_id: str, change: Change, wav: bytes | None = None, drop_result: bool = False,
               durable: bool = True, base: JobRecord | None = None) -> JobRecord | None:
        for _ in range(MAX_RETRIES):
            record, base = base or self.get(job_id), None
            if record is None:
                return None
            seen, queued = record.version, record.state == "queued"
            if not change(record):
                return record
            if queued and record.state != "queued":
                record.left_queue_at = time.time()
            record.version = seen + 1
            if self._write(record, seen, wav, drop_result, durable):
                return record
        raise StoreError(f"job {job_id} changed {MAX_RETRIES} times while one change was being written")

    def _write(self, record: JobRecord, seen: int, wav: bytes | None, drop_result: bool, durable: bool) -> bool:
        sql = self.dialect.sql
        with self.pool.connection() as conn, self.dialect.write(conn, durable):
            cursor = conn.execute(sql(
                "UPDATE jobs SET state = ?, expires_at = ?, version = ?, record = ?, left_queue_at = ?"
                " WHERE id = ? AND version = ?"),
                (record.state, record.expires_at, record.version, to_json(record), record.left_queue_at, record.id,
                 seen))
            if cursor.rowcount != 1:
                return False
            if wav is not None:
                conn.execute(sql("INSERT INTO results (job_id, wav) VALUES (?, ?)"
                                 " ON CONFLICT (job_id) DO UPDATE SET wav = excluded.wav"), (record.id, wav))
            if drop_result:
                conn.execute(sql("DELETE FROM results WHERE job_id = ?"), (record.id,))
            return True

    def delete(self, job_id: str) -> None:
        with self.pool.connection() as conn, self.dialect.write(conn):
            for table, column in (("results", "job_id"), ("waiters", "job_id"), ("jobs", "id")):
                conn.execute(self.dialect.sql(f"DELETE FROM {table} WHERE {column} = ?"), (job_id,))

    # --- clients waiting on jobs -------------------------------------------------------------------------
    def _write_one(self, sql: str, params: Sequence[Any]) -> None:
        with self.pool.connection() as conn, self.dialect.write(conn):
            conn.execute(self.dialect.sql(sql), params)

    def add_waiter(self, job_id: str, stream: str) -> None:
        self._write_one("INSERT INTO waiters (job_id, stream, left_at) VALUES (?, ?, NULL)", (job_id, stream))

    def leave_waiter(self, job_id: str, stream: str, at: float) -> None:
        self._write_one("UPDATE waiters SET left_at = ? WHERE job_id = ? AND stream = ?", (at, job_id, stream))

    def drop_waiter(self, job_id: str, stream: str) -> None:
        self._write_one("DELETE FROM waiters WHERE job_id = ? AND stream = ?", (job_id, stream))

    def others_waiting(self, job_id: str, stream: str, left_since: float) -> bool:
        return bool(self._all("SELECT 1 FROM waiters WHERE job_id = ? AND stream <> ?"
                              " AND (left_at IS NULL OR left_at >= ?) LIMIT 1", (job_id, stream, left_since)))

    # --- queries ------------------------------------------------------------------------------------------
    def versions(self, job_ids: Iterable[str]) -> dict[str, int]:
        return {row[0]: int(row[1]) for row in self._chunks("SELECT id, version FROM jobs WHERE id IN ({ids})",
                                                            job_ids)}

    def states(self, job_ids: Iterable[str]) -> dict[str, str]:
        return {row[0]: row[1] for row in self._chunks("SELECT id, state FROM jobs WHERE id IN ({ids})", job_ids)}

    def count(self, states: tuple[str, ...] = (), client: str | None = None) -> int:
        where, params = [], list[Any]()
        if states:
            where.append(f"state IN ({_marks(len(states))})")
            params += states
        if client is not None:
            where.append("client = ?")
            params.append(client)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return int(self._all(f"SELECT count(*) FROM jobs{clause}", params)[0][0])

    def due(self, now: float, grace: float) -> list[str]:
        rows = self._all(
            f"SELECT id FROM jobs WHERE (state IN ({_marks(len(FINISHED))}) AND expires_at <= ?)"
            f" OR (state IN ({_marks(len(UNFINISHED))}) AND deadline < ?)",
            (*FINISHED, now, *UNFINISHED, now - grace))
        return [row[0] for row in rows]

    def drop_tombstones(self, before: float) -> int:
        with self.pool.connection() as conn, self.dialect.write(conn):
            for table in ("results", "waiters"):
                conn.execute(self.dialect.sql(f"DELETE FROM {table} WHERE job_id IN"
                                              " (SELECT id FROM jobs WHERE state = 'expired' AND expires_at <= ?)"),
                             (before,))
            cursor = conn.execute(self.dialect.sql("DELETE FROM jobs WHERE state = 'expired' AND expires_at <= ?"),
                                  (before,))
            return int(cursor.rowcount)

    def result(self, job_id: str) -> bytes | None:
        rows = self._all("SELECT wav FROM results WHERE job_id = ?", (job_id,))
        return bytes(rows[0][0]) if rows else None

    def close(self) -> None:
        self.pool.close()

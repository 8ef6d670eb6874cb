"""`JobRecords` in SQL: one implementation for SQLite and PostgreSQL (their differences live in dialects.py).

A record is stored as one JSON document plus the few columns the queries filter on. Changes are optimistic:
read the record, apply the change in Python, write it back only if its version is still the one read (else
read again), so no lock is held across Python code and two replicas folding events for one job never lose
each other's writes.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .dialects import Dialect, Pool, dialect_for
from .migrations import migrate
from .records import FINISHED, UNFINISHED, Change, JobRecord, StoreError, from_json, to_json

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
    def add(self, record: JobRecord) -> tuple[JobRecord, bool]:
        with self.pool.connection() as conn:
            cursor = conn.execute(self.dialect.sql(
                "INSERT INTO jobs (id, client, state, backend, deadline, expires_at, version, record)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"),
                (record.id, record.client, record.state, record.backend, record.deadline, record.expires_at,
                 record.version, to_json(record)))
            if cursor.rowcount == 1:
                return record, True
        stored = self.get(record.id)
        if stored is None:  # inserted by someone else and deleted again in between: a rare race, try once more
            return self.add(record)
        return stored, False

    def queued_ids(self, backend: str) -> frozenset[str]:
        return frozenset(row[0] for row in self._all("SELECT id FROM jobs WHERE state = 'queued' AND backend = ?",
                                                     (backend,)))

    def get(self, job_id: str) -> JobRecord | None:
        rows = self._all("SELECT record FROM jobs WHERE id = ?", (job_id,))
        return from_json(rows[0][0]) if rows else None

    def update(self, job_id: str, change: Change, wav: bytes | None = None, drop_result: bool = False,
               durable: bool = True, base: JobRecord | None = None) -> JobRecord | None:
        for _ in range(MAX_RETRIES):
            record, base = base or self.get(job_id), None
            if record is None:
                return None
            seen = record.version
            if not change(record):
                return record
            record.version = seen + 1
            if self._write(record, seen, wav, drop_result, durable):
                return record
        raise StoreError(f"job {job_id} changed {MAX_RETRIES} times while one change was being written")

    def _write(self, record: JobRecord, seen: int, wav: bytes | None, drop_result: bool, durable: bool) -> bool:
        sql = self.dialect.sql
        with self.pool.connection() as conn, self.dialect.write(conn, durable):
            cursor = conn.execute(sql(
                "UPDATE jobs SET state = ?, expires_at = ?, version = ?, record = ? WHERE id = ? AND version = ?"),
                (record.state, record.expires_at, record.version, to_json(record), record.id, seen))
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
            conn.execute(self.dialect.sql("DELETE FROM results WHERE job_id = ?"), (job_id,))
            conn.execute(self.dialect.sql("DELETE FROM jobs WHERE id = ?"), (job_id,))

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
            conn.execute(self.dialect.sql("DELETE FROM results WHERE job_id IN"
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

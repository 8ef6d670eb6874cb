"""The job store's schema, as numbered migrations applied when a store opens.

Each migration runs with its `schema_version` row in one transaction (both databases have transactional DDL),
under a lock that makes a second replica starting at the same moment wait and then find nothing left to do.
A release that changes the schema appends a migration here; it never edits a published one. A store written
by a newer TAG is refused instead of being read with the wrong layout.
"""
from __future__ import annotations

import time

from .dialects import Connection, Dialect
from .records import StoreError

MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (1, "jobs and their result audio", (
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, client TEXT NOT NULL, state TEXT NOT NULL, backend TEXT NOT NULL,"
        " deadline DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION, version BIGINT NOT NULL,"
        " record TEXT NOT NULL)",
        "CREATE INDEX jobs_by_state ON jobs (state, backend)",
        "CREATE TABLE results (job_id TEXT PRIMARY KEY, wav {blob} NOT NULL)",
    )),
    (2, "live queue positions from when jobs were created and left the queue; limits from one index", (
        "ALTER TABLE jobs ADD COLUMN created_at DOUBLE PRECISION",
        "ALTER TABLE jobs ADD COLUMN left_queue_at DOUBLE PRECISION",
        "CREATE INDEX jobs_leaving_queue ON jobs (backend, left_queue_at)",
        "CREATE INDEX jobs_by_state_and_client ON jobs (state, client)",
    )),
    (3, "start deadlines (a job not started by then expires without running)", (
        "ALTER TABLE jobs ADD COLUMN start_deadline DOUBLE PRECISION",
        "CREATE INDEX jobs_by_start_deadline ON jobs (state, start_deadline)",
    )),
    (4, "clients waiting on jobs (event streams, speech calls), so a job nobody waits on any more is cancelled", (
        "CREATE TABLE waiters (job_id TEXT NOT NULL, stream TEXT NOT NULL, left_at DOUBLE PRECISION,"
        " PRIMARY KEY (job_id, stream))",
    )),
)
LATEST = MIGRATIONS[-1][0]


def migrate(dialect: Dialect, conn: Connection) -> list[int]:
    """Bring the schema up to LATEST; the versions this call applied (empty when it was up to date)."""
    with dialect.write(conn):
        dialect.lock_migrations(conn)
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
                     " description TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
        current = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0
        if current > LATEST:
            raise StoreError(f"the job store's schema is version {current}, newer than this TAG knows ({LATEST}):"
                             " upgrade TAG, or point it at another store")
        applied = []
        for version, description, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                conn.execute(statement.format(blob=dialect.blob))
            conn.execute(dialect.sql("INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)"),
                         (version, description, time.time()))
            applied.append(version)
        return applied

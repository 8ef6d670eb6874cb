"""The two databases a job store can live in, and a small pool of connections to one of them.

Both are driven in autocommit mode with explicit short write transactions, so a reader never holds a lock and a
writer holds one only for the statements of a single change. SQLite: WAL journal (readers never block the
writer; several processes on one machine share the file), a busy timeout instead of "database is locked"
errors, and `BEGIN IMMEDIATE` so two writers queue on the lock instead of failing on upgrade. PostgreSQL:
psycopg 3, one connection per concurrent caller, an advisory lock that serialises migrations across replicas.
"""
from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from tagcore.errors import ConfigError

from .records import StoreError

BUSY_TIMEOUT_S = 30.0
MIGRATION_LOCK = 0x7A61_6701
"""PostgreSQL advisory lock key held while migrations run (any 64-bit number unique to TAG)."""
SUBMIT_LOCK = 0x7A61_6702
"""PostgreSQL advisory lock key held while a new job's limits are counted and the job inserted."""


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    def execute(self, sql: Any, params: Sequence[Any] = ()) -> Any: ...

    def close(self) -> None: ...


class Dialect(Protocol):
    name: str
    blob: str
    """The column type of binary data."""

    def connect(self) -> Connection: ...

    def sql(self, text: str) -> str:
        """`text` (written with `?` placeholders) in this driver's placeholder style."""

    def write(self, conn: Connection, durable: bool = True) -> contextlib.AbstractContextManager[None]:
        """A write transaction: committed when the block ends, rolled back when it raises. A change that is
        not `durable` (a progress event: the next one supersedes it) may skip waiting for the disk."""

    def lock_migrations(self, conn: Connection) -> None:
        """Inside a write transaction: wait until no other process is migrating."""

    def lock_submissions(self, conn: Connection) -> None:
        """Inside a write transaction: wait until no other process is counting limits for a new job."""

    def errors(self) -> tuple[type[BaseException], ...]:
        """The driver's exceptions, turned into StoreError by the pool."""


class SqliteDialect:
    """A database file on this machine (several processes may share it; not on a network file system)."""

    name, blob = "sqlite", "BLOB"

    def __init__(self, path: Path, synchronous: str = "normal") -> None:
        """`synchronous`: "normal" (WAL's usual level: a commit survives any crash of TAG or of other
        processes, and a power cut may undo the last commits but never corrupts) or "full" (every commit also
        waits for the disk: survives a power cut, at one disk flush per change)."""
        if synchronous not in ("normal", "full"):
            raise ConfigError(f"http store: sqlite synchronous={synchronous!r}; use normal or full")
        self.path, self.synchronous = path, synchronous
        self._writer = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def connect(self) -> Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
        return conn

    def sql(self, text: str) -> str:
        return text

    @contextlib.contextmanager
    def write(self, conn: Connection, durable: bool = True) -> Iterator[None]:
        """Threads of this process take turns on a lock before BEGIN IMMEDIATE: SQLite's own wait for a busy
        database sleeps in steps of up to 100 ms, so under many concurrent writers a commit of a millisecond
        could keep a request waiting a tenth of a second. Other processes still meet the busy timeout."""
        with self._writer:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def lock_migrations(self, conn: Connection) -> None:
        """BEGIN IMMEDIATE already excludes every other writer."""

    def lock_submissions(self, conn: Connection) -> None:
        """BEGIN IMMEDIATE already excludes every other writer."""

    def errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.Error,)


class PostgresDialect:
    """A PostgreSQL database shared by API replicas on any number of machines."""

    name, blob = "postgresql", "BYTEA"

    def __init__(self, url: str) -> None:
        import psycopg  # only deployments that name a PostgreSQL store need the driver loaded

        self._psycopg = psycopg
        self.url = url

    def connect(self) -> Connection:
        conn: Connection = self._psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        return conn

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    @contextlib.contextmanager
    def write(self, conn: Connection, durable: bool = True) -> Iterator[None]:
        with conn.transaction():  # type: ignore[attr-defined]
            if not durable:  # the commit returns before the WAL flush; a server crash may lose it, never corrupt
                conn.execute("SET LOCAL synchronous_commit = off")
            yield

    def lock_migrations(self, conn: Connection) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))

    def lock_submissions(self, conn: Connection) -> None:
        """Only submits wait on each other (for the moments of a count and an insert); updates never do."""
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SUBMIT_LOCK,))

    def errors(self) -> tuple[type[BaseException], ...]:
        return (self._psycopg.Error,)


def dialect_for(url: str) -> Dialect:
    """The database a store URL names: `sqlite:///relative/path`, `sqlite:////absolute/path` (optionally
    `?synchronous=full`) or `postgresql://user:password@host:port/database` (libpq's URL and its options)."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        path, _, query = (url[len("sqlite:///"):] if url.startswith("sqlite:///") else "").partition("?")
        if not path:
            raise ConfigError(f"http store {url!r}: write sqlite:///relative/path or sqlite:////absolute/path")
        options = dict(parse_qsl(query))
        unknown = set(options) - {"synchronous"}
        if unknown:
            raise ConfigError(f"http store {url!r}: unknown option {sorted(unknown)[0]!r} (known: synchronous)")
        return SqliteDialect(Path(path).expanduser(), options.get("synchronous", "normal").lower())
    if scheme in ("postgresql", "postgres"):
        return PostgresDialect(url)
    raise ConfigError(f"http store {url!r}: the URL must start with sqlite:/// or postgresql://")


class Pool:
    """Idle connections reused by whichever thread asks next; a connection that saw an error is closed, so a
    database restart costs one failed call, never a stuck connection."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._idle: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        self._errors = dialect.errors()

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = self._open()
        try:
            yield conn
        except self._errors as exc:
            conn.close()
            raise StoreError(f"the {self.dialect.name} job store failed: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._idle.put(conn)

    def _open(self) -> Connection:
        try:
            return self.dialect.connect()
        except self._errors as exc:
            raise StoreError(f"cannot open the {self.dialect.name} job store: {exc}") from exc

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

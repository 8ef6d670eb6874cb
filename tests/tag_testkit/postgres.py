"""A private PostgreSQL cluster for tests: `initdb` into a temporary folder, `postgres` on 127.0.0.1.

Like the private RabbitMQ node: one cluster per test session (`postgres_node` fixture, ~2 s to start), a fresh
database per test (`node.new_database()`), trust authentication on loopback only, its socket in the temporary
folder, stopped by its pid. PostgreSQL refuses to run as root (and the tests and CI run as root), so the server
runs as the unprivileged `nobody` user through `setpriv`. Tests skip with a reason when the binaries are absent.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

INSTALL_HINT = "apt-get install postgresql"
RUN_AS = "nobody"
START_TIMEOUT_S = 60.0


def binaries() -> Path | None:
    """The folder holding initdb and postgres (PATH first, then Debian's versioned folders, newest first)."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).resolve().parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "postgres").exists():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _as_server_user(command: list[str]) -> list[str]:
    """`command` run as an unprivileged user when we are root (initdb and postgres refuse root)."""
    if os.geteuid() != 0:
        return command
    return ["setpriv", f"--reuid={RUN_AS}", f"--regid={pwd.getpwnam(RUN_AS).pw_gid}", "--clear-groups", *command]


@dataclass
class PostgresNode:
    """One running cluster: connect with `url(database)`."""

    root: Path
    port: int
    process: subprocess.Popen[bytes]

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """The URL of a new, empty database (so tests never see each other's tables)."""
        import psycopg

        name = f"t{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, stop), by the server's own pid."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_postgres(root: Path, durable: bool = False) -> PostgresNode:
    """initdb into `root`/data and start the server; raises RuntimeError with its log when it does not come up.
    Tests run without fsync (nothing to keep past the session); `durable` keeps it on, as a benchmark needs."""
    folder = binaries()
    if folder is None:
        raise RuntimeError(f"PostgreSQL is not installed ({INSTALL_HINT})")
    data, sockets, log_path = root / "data", root / "sockets", root / "postgres.log"
    sockets.mkdir(parents=True)
    if os.geteuid() == 0:
        user = pwd.getpwnam(RUN_AS)
        for path in (root, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
    subprocess.run(_as_server_user([str(folder / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                    "--no-sync", "-E", "UTF8"]),
                   check=True, capture_output=True, cwd=root)
    port = _free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(_as_server_user([
            str(folder / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(sockets),
            "-c", f"fsync={'on' if durable else 'off'}", "-c", "max_connections=200"]),
            stdout=log, stderr=subprocess.STDOUT, cwd=root)
    node = PostgresNode(root, port, process)
    _wait_ready(node, log_path)
    return node


def _wait_ready(node: PostgresNode, log_path: Path) -> None:
    import psycopg

    end = time.monotonic() + START_TIMEOUT_S
    while True:
        if node.process.poll() is not None:
            raise RuntimeError(f"postgres exited with {node.process.returncode}:\n{log_path.read_text()}")
        try:
            psycopg.connect(node.url(), connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > end:
                node.stop()
                raise RuntimeError(f"postgres did not accept connections in {START_TIMEOUT_S:.0f} s:\n"
                                   f"{log_path.read_text()}") from None
            time.sleep(0.1)


@pytest.fixture(scope="session")
def postgres_node() -> Iterator[PostgresNode]:
    """A running private cluster for the whole session; stopped and deleted afterwards. Its folder is made
    with mkdtemp, not pytest's tmp_path: the server user must reach it, and pytest's folders are root's only."""
    if binaries() is None:
        pytest.skip(f"PostgreSQL is not installed ({INSTALL_HINT})")
    root = Path(tempfile.mkdtemp(prefix="tag-postgres-"))
    node = start_postgres(root)
    try:
        yield node
    finally:
        node.stop()
        shutil.rmtree(root, ignore_errors=True)

"""One thread that owns one pika BlockingConnection, reconnects with backoff and runs calls from other threads.

pika's BlockingConnection is not thread-safe, and a connection whose thread is busy stops answering heartbeats.
So every client and job source keeps its connection on a private I/O thread that does nothing but network work;
other threads hand it small functions through `call`, which wakes the thread with `add_callback_threadsafe`.
"""
from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingConnection

log = logging.getLogger(__name__)
T = TypeVar("T")

CONNECTION_ERRORS = (pika.exceptions.AMQPError, OSError)
"""What a lost broker looks like: connection/channel closed, stream lost, refused, DNS failure..."""


class NotConnected(ConnectionError):
    """The broker connection dropped before a call could run (it is retried by the caller if it matters)."""


class IOThread:
    """Base for the client and the job source: subclasses implement `setup` (declare, consume) and may
    implement `on_disconnect` (forget delivery tags of the dead connection)."""

    initial_delay = 0.2
    outage_level = logging.WARNING
    """How the first failed attempt of an outage is logged (later ones, until it is over, only at DEBUG)."""

    def __init__(self, params: pika.ConnectionParameters, *, name: str, max_delay: float) -> None:
        self.params = params
        self.max_delay = max_delay
        self.generation = 0
        """Increments on every successful connect; delivery tags are only valid within their generation."""
        self.connected = threading.Event()
        self.last_error = ""
        """The most recent connection failure in one line (for error messages), empty once connected."""
        self.failure: str | None = None
        """Why the thread died, when it did (a bug, not a lost broker): the process must then exit non-zero."""
        self._stop = threading.Event()
        self._calls: collections.deque[tuple[Callable[[], Any], Future]] = collections.deque()
        self._connection: BlockingConnection | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # -- subclass hooks ------------------------------------------------------------------------------------
    def setup(self, connection: BlockingConnection) -> None:
        raise NotImplementedError

    def on_disconnect(self) -> None:
        """Called on the I/O thread after the connection was lost or closed."""

    # -- public ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        if not logging.getLogger().isEnabledFor(logging.INFO):
            # pika logs every failed attempt at ERROR with a traceback; we report each outage in one line.
            logging.getLogger("pika").setLevel(logging.CRITICAL)
        self._thread.start()

    def call(self, fn: Callable[[], T]) -> "Future[T]":
        """Run `fn` on the I/O thread as soon as it is connected; the future carries its result."""
        future: Future[T] = Future()
        if self._stop.is_set():
            future.set_exception(NotConnected("the transport is closed"))
            return future
        self._calls.append((fn, future))
        self._wake()
        return future

    def stop(self, timeout: float = 10.0) -> None:
        """Close the connection (the broker requeues anything unacknowledged) and end the thread."""
        self._stop.set()
        self._wake()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # -- the thread ----------------------------------------------------------------------------------------
    def _wake(self) -> None:
        connection = self._connection
        if connection is not None:
            try:
                connection.add_callback_threadsafe(lambda: None)
            except Exception:  # connection closing: the loop notices by itself
                pass

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
            log.critical("the broker I/O thread %s died (%s); no more messages are handled", self._thread.name,
                         self.failure, exc_info=True)
            self._stop.set()
        finally:
            while self._calls:
                _, future = self._calls.popleft()
                if future.set_running_or_notify_cancel():  # a caller may have cancelled it meanwhile
                    future.set_exception(NotConnected("the transport is closed"))

    def _serve(self) -> None:
        delay = self.initial_delay
        while not self._stop.is_set():
            try:
                connection = BlockingConnection(self.params)
            except CONNECTION_ERRORS as exc:
                level = logging.DEBUG if self.last_error else self.outage_level
                self.last_error = _one_line(exc)
                log.log(level, "cannot reach the broker %s:%s (%s); retrying with backoff up to %g s",
                        self.params.host, self.params.port, self.last_error, self.max_delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self.max_delay)
                continue
            try:
                self.generation += 1
                self.setup(connection)
                self._connection = connection
                self.connected.set()
                if self.last_error:
                    log.log(self.outage_level, "connected to the broker %s:%s", self.params.host, self.params.port)
                self.last_error = ""
                delay = self.initial_delay
                while not self._stop.is_set():
                    self._drain()
                    connection.process_data_events(time_limit=1.0)
                self._drain()
            except CONNECTION_ERRORS as exc:
                self.last_error = _one_line(exc)
                log.log(self.outage_level, "broker connection lost (%s); reconnecting", self.last_error)
                self._stop.wait(delay)
                delay = min(delay * 2, self.max_delay)
            finally:
                self.connected.clear()
                self._connection = None
                try:
                    if connection.is_open:
                        connection.close()
                except Exception:
                    pass
                self.on_disconnect()

    def _drain(self) -> None:
        while self._calls:
            fn, future = self._calls.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except CONNECTION_ERRORS as exc:
                future.set_exception(NotConnected(f"broker connection lost: {type(exc).__name__}"))
                raise
            except BaseException as exc:
                future.set_exception(exc)


def _one_line(exc: BaseException) -> str:
    """A connection error in one line: pika's AMQPConnectionError has an empty str() and keeps the real cause
    (e.g. ConnectionRefusedError) in the repr of its arguments."""
    text = str(exc) or "; ".join(repr(a) if isinstance(a, BaseException) else str(a) for a in exc.args)
    return (text or type(exc).__name__)[:200]

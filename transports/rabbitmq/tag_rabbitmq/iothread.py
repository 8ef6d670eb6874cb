"""One thread that owns one pika BlockingConnection, reconnects with backoff and runs calls from other threads.

pika's BlockingConnection is not thread-safe, and a connection whose thread is busy stops answering heartbeats.
So every client and job source keeps its connection on a private I/O thread that does nothing but network work;
other threads hand it small functions through `call`, which wakes the thread with `add_callback_threadsafe`.

Reconnecting: a restarted broker opens its port only once it is ready for clients, so while the port refuses
connections the thread knocks on it (a plain TCP connect) every PROBE_INTERVAL s and tries AMQP as soon as it
opens, instead of sleeping out an exponential backoff that had grown to `reconnect_max_delay` (10 s) by then.
AMQP attempts themselves back off exponentially with jitter, capped at YOUNG_CEILING s during the first
YOUNG_OUTAGE s of an outage and at `reconnect_max_delay` after that; when the port answers but AMQP fails (a proxy
in front of a dead broker, bad credentials) nothing is probed and only the backoff paces the attempts.
"""
from __future__ import annotations

import collections
import logging
import random
import socket
import threading
import time
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


PROBE_INTERVAL = 0.25
"""Seconds between TCP knocks on a broker port that refuses connections (also each knock's connect timeout)."""
YOUNG_OUTAGE = 30.0
"""Seconds an outage counts as young: its AMQP attempts are at most YOUNG_CEILING s apart."""
YOUNG_CEILING = 2.0


class NotConnected(ConnectionError):
    """The broker connection dropped before a call could run (it is retried by the caller if it matters)."""


class Backoff:
    """Delays between the reconnect attempts of one outage: exponential from `initial`, with jitter (so that a
    fleet of processes does not knock in step), capped lower while the outage is young (a broker restart)."""

    def __init__(self, initial: float, ceiling: float) -> None:
        self.initial = initial
        self.ceiling = ceiling
        self.started = time.monotonic()
        self.attempts = 0

    def next(self) -> float:
        young = time.monotonic() - self.started < YOUNG_OUTAGE
        cap = min(self.ceiling, YOUNG_CEILING) if young else self.ceiling
        delay = min(cap, self.initial * 2 ** min(self.attempts, 30))
        self.attempts += 1
        return delay * random.uniform(0.5, 1.0)


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

    def before_close(self) -> None:
        """Called on the I/O thread when `stop` closes a live connection, just before it is closed: give back
        what is held (a closed connection returns deliveries as failed ones to RabbitMQ 4.3's delivery count)."""

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
        backoff: Backoff | None = None  # the current outage's (None while connected): it starts with the outage
        while not self._stop.is_set():
            try:
                connection = BlockingConnection(self.params)
            except CONNECTION_ERRORS as exc:
                level = logging.DEBUG if self.last_error else self.outage_level
                self.last_error = _one_line(exc)
                log.log(level, "cannot reach the broker %s:%s (%s); retrying with backoff up to %g s",
                        self.params.host, self.params.port, self.last_error, self.max_delay)
                backoff = backoff or Backoff(self.initial_delay, self.max_delay)
                self._pause(backoff.next())
                continue
            if self._serve_connection(connection):
                backoff = None
            if not self._stop.is_set():
                backoff = backoff or Backoff(self.initial_delay, self.max_delay)
                self._pause(backoff.next())

    def _serve_connection(self, connection: BlockingConnection) -> bool:
        """Set up and serve one connection until it is lost or the thread stops; True if it was set up."""
        ready = False
        try:
            self.generation += 1
            self.setup(connection)
            self._connection = connection
            self.connected.set()
            ready = True
            if self.last_error:
                log.log(self.outage_level, "connected to the broker %s:%s", self.params.host, self.params.port)
            self.last_error = ""
            while not self._stop.is_set():
                self._drain()
                connection.process_data_events(time_limit=1.0)
            self._drain()
            self.before_close()
        except CONNECTION_ERRORS as exc:
            self.last_error = _one_line(exc)
            log.log(self.outage_level, "broker connection lost (%s); reconnecting", self.last_error)
        finally:
            self.connected.clear()
            self._connection = None
            try:
                if connection.is_open:
                    connection.close()
            except Exception:
                pass
            self.on_disconnect()
        return ready

    def _pause(self, delay: float) -> None:
        """Wait `delay` s before the next attempt, or less: while the broker's port refuses connections, until
        it accepts one (a restarted broker is ready for clients when it opens its port)."""
        end = time.monotonic() + delay
        if self._port_open():  # the port answers, AMQP did not: only the backoff paces the attempts
            self._stop.wait(delay)
            return
        while not self._stop.is_set() and (left := end - time.monotonic()) > 0:
            self._stop.wait(min(PROBE_INTERVAL, left))
            if self._port_open():
                return

    def _port_open(self) -> bool:
        """True when a TCP connection to the broker's address succeeds (closed at once, before any AMQP)."""
        try:
            with socket.create_connection((self.params.host, self.params.port), timeout=PROBE_INTERVAL):
                return True
        except OSError:
            return False

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

"""Reconnect pacing of the broker I/O threads, on local sockets (no broker): a refused port is knocked on and the
wait ends when it opens; a port that answers leaves the pacing to the backoff, which is capped low while an outage
is young."""
from __future__ import annotations

import socket
import threading
import time

import pika

from tag_rabbitmq.iothread import YOUNG_CEILING, YOUNG_OUTAGE, Backoff, IOThread


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def io_thread(port: int) -> IOThread:
    """Not started: only its waiting between attempts is exercised."""
    return IOThread(pika.ConnectionParameters(host="127.0.0.1", port=port), name="test-io", max_delay=10.0)


def test_the_wait_ends_when_a_refused_port_opens():
    port = free_port()
    listener = socket.socket()

    def open_later() -> None:
        time.sleep(0.5)
        listener.bind(("127.0.0.1", port))
        listener.listen()
    threading.Thread(target=open_later, daemon=True).start()
    try:
        start = time.monotonic()
        io_thread(port)._pause(30.0)
        assert time.monotonic() - start < 10.0  # well before the 30 s the backoff asked for
    finally:
        listener.close()


def test_a_port_that_answers_leaves_the_pacing_to_the_backoff():
    with socket.create_server(("127.0.0.1", 0)) as listener:  # say, a proxy in front of a dead broker
        start = time.monotonic()
        io_thread(listener.getsockname()[1])._pause(0.6)
        assert time.monotonic() - start >= 0.6


def test_the_backoff_grows_to_a_low_ceiling_while_the_outage_is_young():
    backoff = Backoff(0.2, 10.0)
    delays = [backoff.next() for _ in range(12)]
    assert delays[0] <= 0.2 and max(delays) <= YOUNG_CEILING and delays[-1] >= YOUNG_CEILING / 2
    backoff.started -= YOUNG_OUTAGE + 1  # the outage has lasted a while now
    assert YOUNG_CEILING < max(backoff.next() for _ in range(5)) <= 10.0

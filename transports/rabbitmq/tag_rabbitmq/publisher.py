"""Publisher confirms without a round trip per message: publish everything pending, then collect the acks.

pika's BlockingChannel in confirm mode waits for the broker's Basic.Ack of each message before `basic_publish`
returns, so 200 requests submitted at once cost 200 round trips one after the other, each a quorum queue commit
(the 2.5 s p50 of `POST /v1/jobs` with 200 jobs at once). A `ConfirmedPublisher` drives the asynchronous channel
under a channel of the I/O thread's BlockingConnection instead: `publish` only buffers the frame, the
connection's event loop writes it, and the broker's Basic.Ack / Basic.Nack frames (one may settle many messages
with `multiple`) come back as a callback while the I/O thread processes events.

The asynchronous channel is `BlockingChannel._impl` (a `pika.channel.Channel`), a private attribute: pika has kept
it under that name since 0.10 and uv.lock pins the version; every submit in the test suite goes through it, so an
upgrade that moves it fails loudly. The rest is pika's public asynchronous API. (The alternative without it, a
SelectConnection with an event loop of its own for publishing, costs every client a second connection and thread
and a hand-off between threads per request.) Callbacks run on the I/O thread inside pika's event loop, so they
must not make blocking calls on the connection.

Delivery tags count the messages published on one channel since its Confirm.Select, from 1. A message has one of
three outcomes: confirmed (ack), refused (nack: publish it again), or lost with its channel or connection before
the broker answered (unknown: publish it again, which may leave a second copy in the queue; consumers deduplicate
by request id).
"""
from __future__ import annotations

from collections.abc import Callable
from enum import Enum

import pika
import pika.channel
import pika.frame
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection


class Outcome(Enum):
    CONFIRMED = "confirmed"
    REFUSED = "refused"
    """The broker nacked it (an internal error in the queue): publish it again."""
    LOST = "lost"
    """Its channel or connection closed before the broker answered: publish it again on the next one."""


Done = Callable[[Outcome], None]


class ConfirmedPublisher:
    """Pipelined confirmed publishes on one channel of a BlockingConnection (I/O thread only)."""

    def __init__(self, on_settled: Callable[[], None], on_channel_closed: Callable[[Exception], None]) -> None:
        self._on_settled = on_settled
        """Called after each Basic.Ack/Nack frame, once the outcomes it carried were handed out."""
        self._on_channel_closed = on_channel_closed
        self._channel: BlockingChannel | None = None
        self._impl: pika.channel.Channel | None = None
        self._next_tag = 1
        self._unconfirmed: dict[int, Done] = {}
        """Delivery tag -> what to call with its outcome, in publishing (ascending tag) order."""

    @property
    def is_open(self) -> bool:
        return self._impl is not None and self._impl.is_open

    def open(self, connection: BlockingConnection) -> None:
        """A new channel in confirm mode. Confirm.Select goes out with nowait: the publishes that follow it on the
        same channel are confirmed, no round trip needed."""
        channel = connection.channel()
        impl: pika.channel.Channel = channel._impl
        impl.confirm_delivery(ack_nack_callback=self._on_confirm)
        impl.add_on_close_callback(self._on_close)
        self._channel, self._impl, self._next_tag = channel, impl, 1

    def publish(self, exchange: str, routing_key: str, body: bytes, properties: pika.BasicProperties,
                done: Done) -> None:
        """Buffer one message; `done` is called with its outcome (on the I/O thread, inside pika's event loop)."""
        if self._impl is None or not self._impl.is_open:
            done(Outcome.LOST)
            return
        self._impl.basic_publish(exchange, routing_key, body, properties)
        self._unconfirmed[self._next_tag] = done
        self._next_tag += 1

    def forget(self) -> None:
        """The connection is gone: every message still unconfirmed is lost."""
        self._channel = self._impl = None
        self._lose_all()

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        outcome = Outcome.CONFIRMED if isinstance(method, pika.spec.Basic.Ack) else Outcome.REFUSED
        if method.multiple:
            settled = []
            for tag in self._unconfirmed:  # ascending: stop at the first tag above the one acknowledged
                if tag > method.delivery_tag:
                    break
                settled.append(tag)
        else:
            settled = [method.delivery_tag]
        for tag in settled:
            done = self._unconfirmed.pop(tag, None)
            if done is not None:
                done(outcome)
        self._on_settled()

    def _on_close(self, channel: pika.channel.Channel, reason: Exception) -> None:
        if channel is not self._impl:
            return
        self._channel = self._impl = None
        self._lose_all()
        self._on_channel_closed(reason)

    def _lose_all(self) -> None:
        lost, self._unconfirmed = list(self._unconfirmed.values()), {}
        for done in lost:
            done(Outcome.LOST)

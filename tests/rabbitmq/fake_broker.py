"""An in-memory stand-in for pika's BlockingConnection, enough for the transport's I/O threads.

It records every call the transport makes on a channel (declarations, QoS, publishes, acknowledgements), keeps the
messages published to the default exchange in queues that `basic_get` hands out, and answers confirmed publishes
the way a broker may: all at once with one `multiple` ack, with a nack, or not yet (`hold`). Tests use it to check
what the transport asks of a broker (RabbitMQ 4 refuses global QoS and transient shared queues) and how it handles
confirms, deterministically and without a broker. Install it with `FakeBroker.install(monkeypatch)`.
"""
from __future__ import annotations

import collections
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pika
import pika.exceptions
import pika.frame
import pika.spec

import tag_rabbitmq.iothread


@dataclass
class Call:
    connection: int
    channel: int
    name: str
    args: tuple
    kwargs: dict


@dataclass
class Message:
    body: bytes
    properties: pika.BasicProperties
    redelivered: bool = False


@dataclass
class FakeBroker:
    confirms: str = "ack"
    """How publisher confirms are answered: "ack" (one multiple ack per batch), "nack" (likewise), "hold" (none)."""
    calls: list[Call] = field(default_factory=list)
    queues: dict[str, collections.deque[Message]] = field(default_factory=lambda: collections.defaultdict(
        collections.deque))
    connections: list["FakeConnection"] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def install(self, monkeypatch) -> "FakeBroker":
        monkeypatch.setattr(tag_rabbitmq.iothread, "BlockingConnection", self.connect)
        return self

    def connect(self, params: Any) -> "FakeConnection":
        with self.lock:
            connection = FakeConnection(self, len(self.connections) + 1)
            self.connections.append(connection)
            return connection

    def record(self, connection: int, channel: int, name: str, args: tuple, kwargs: dict) -> None:
        with self.lock:
            self.calls.append(Call(connection, channel, name, args, kwargs))

    def named(self, name: str) -> list[Call]:
        with self.lock:
            return [call for call in self.calls if call.name == name]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < end, "timed out waiting on the fake broker"
            time.sleep(0.01)


class FakeConnection:
    def __init__(self, broker: FakeBroker, number: int) -> None:
        self.broker = broker
        self.number = number
        self.is_open = True
        self.lost = False
        """Set by a test: the next event loop turn raises as a lost connection does."""
        self._channels: list[FakeChannel] = []
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._threadsafe: collections.deque[Callable[[], None]] = collections.deque()

    def channel(self) -> "FakeChannel":
        channel = FakeChannel(self, len(self._channels) + 1)
        self._channels.append(channel)
        return channel

    def add_callback_threadsafe(self, callback: Callable[[], None]) -> None:
        self._threadsafe.append(callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._order), callback))

    def process_data_events(self, time_limit: float | None = 0) -> None:
        if self.lost:
            self.close()
            raise pika.exceptions.StreamLostError("connection lost (simulated)")
        for channel in self._channels:
            channel._impl.answer_confirms()
        while self._timers and self._timers[0][0] <= time.monotonic():
            heapq.heappop(self._timers)[2]()
        while self._threadsafe:
            self._threadsafe.popleft()()
        time.sleep(0.005)

    def close(self) -> None:
        if not self.is_open:
            return
        self.is_open = False
        for channel in self._channels:
            channel.closed(pika.exceptions.ConnectionClosed(320, "closed"))
        with self.broker.lock:  # unacknowledged deliveries go back, marked redelivered
            for channel in self._channels:
                for queue, message in channel.unacked.values():
                    message.redelivered = True
                    self.broker.queues[queue].appendleft(message)


class FakeImpl:
    """Stands for the pika.channel.Channel under a BlockingChannel (the publisher drives it directly)."""

    def __init__(self, channel: "FakeChannel") -> None:
        self.channel = channel
        self.on_confirm: Callable[[Any], None] | None = None
        self.on_close: list[Callable[[Any, Exception], None]] = []
        self.published = 0
        self.answered = 0

    @property
    def is_open(self) -> bool:
        return self.channel.is_open

    def confirm_delivery(self, ack_nack_callback: Callable[[Any], None], callback: Any = None) -> None:
        self.channel.record("impl.confirm_delivery", (), {"nowait": callback is None})
        self.on_confirm = ack_nack_callback

    def add_on_close_callback(self, callback: Callable[[Any, Exception], None]) -> None:
        self.on_close.append(callback)

    def basic_publish(self, exchange: str, routing_key: str, body: bytes, properties: Any = None,
                      mandatory: bool = False) -> None:
        if not self.channel.is_open:
            raise pika.exceptions.ChannelWrongStateError("channel closed")
        self.channel.record("impl.basic_publish", (exchange, routing_key, body), {"properties": properties})
        self.channel.store(exchange, routing_key, body, properties)
        self.published += 1

    def answer_confirms(self) -> None:
        """One frame for every publish not answered yet (`multiple`), as a broker does under load."""
        mode = self.channel.connection.broker.confirms
        if self.on_confirm is None or self.answered == self.published or mode == "hold":
            return
        self.answered = self.published
        method = (pika.spec.Basic.Ack if mode == "ack" else pika.spec.Basic.Nack)(delivery_tag=self.published,
                                                                                   multiple=True)
        self.on_confirm(pika.frame.Method(self.channel.number, method))


class FakeChannel:
    """Stands for a BlockingChannel: records what is asked and answers like an empty, obliging broker."""

    def __init__(self, connection: FakeConnection, number: int) -> None:
        self.connection = connection
        self.number = number
        self.is_open = True
        self._impl = FakeImpl(self)
        self._tags = itertools.count(1)
        self.unacked: dict[int, tuple[str, Message]] = {}

    def record(self, name: str, args: tuple, kwargs: dict) -> None:
        self.connection.broker.record(self.connection.number, self.number, name, args, kwargs)

    def closed(self, reason: Exception) -> None:
        if self.is_open:
            self.is_open = False
            for callback in self._impl.on_close:
                callback(self._impl, reason)

    def store(self, exchange: str, routing_key: str, body: bytes, properties: Any) -> None:
        if exchange == "":
            with self.connection.broker.lock:
                self.connection.broker.queues[routing_key].append(Message(body, properties))

    def close(self) -> None:
        self.record("close", (), {})
        self.closed(pika.exceptions.ChannelClosedByClient(200, "closed"))

    def confirm_delivery(self) -> None:
        self.record("confirm_delivery", (), {})

    def queue_declare(self, queue: str, passive: bool = False, durable: bool = False, exclusive: bool = False,
                      auto_delete: bool = False, arguments: dict | None = None) -> Any:
        self.record("queue_declare", (queue,), {"passive": passive, "durable": durable, "exclusive": exclusive,
                                                 "auto_delete": auto_delete, "arguments": arguments})
        name = queue or f"amq.gen-{self.connection.number}-{self.number}"
        with self.connection.broker.lock:
            count = len(self.connection.broker.queues.get(name, ()))
        return SimpleNamespace(method=SimpleNamespace(queue=name, message_count=count, consumer_count=0))

    def exchange_declare(self, exchange: str, exchange_type: str = "direct", **kwargs: Any) -> None:
        self.record("exchange_declare", (exchange, exchange_type), kwargs)

    def queue_bind(self, queue: str, exchange: str, routing_key: str | None = None, arguments: Any = None) -> None:
        self.record("queue_bind", (queue, exchange), {})

    def basic_qos(self, prefetch_size: int = 0, prefetch_count: int = 0, global_qos: bool = False) -> None:
        self.record("basic_qos", (), {"prefetch_size": prefetch_size, "prefetch_count": prefetch_count,
                                      "global_qos": global_qos})

    def basic_consume(self, queue: str, on_message_callback: Any, auto_ack: bool = False, exclusive: bool = False,
                      consumer_tag: Any = None, arguments: Any = None) -> str:
        self.record("basic_consume", (queue,), {"auto_ack": auto_ack, "exclusive": exclusive})
        return f"ctag-{queue}"

    def basic_publish(self, exchange: str, routing_key: str, body: bytes, properties: Any = None,
                      mandatory: bool = False) -> None:
        self.record("basic_publish", (exchange, routing_key, body), {"properties": properties})
        self.store(exchange, routing_key, body, properties)

    def basic_get(self, queue: str, auto_ack: bool = False) -> tuple[Any, Any, Any]:
        with self.connection.broker.lock:
            waiting = self.connection.broker.queues.get(queue)
            if not waiting:
                return None, None, None
            message = waiting.popleft()
            left = len(waiting)
        tag = next(self._tags)
        self.unacked[tag] = (queue, message)
        self.record("basic_get", (queue,), {"delivery_tag": tag})
        method = SimpleNamespace(delivery_tag=tag, redelivered=message.redelivered, message_count=left,
                                 routing_key=queue)
        return method, message.properties, message.body

    def basic_ack(self, delivery_tag: int = 0, multiple: bool = False) -> None:
        self.record("basic_ack", (delivery_tag,), {})
        self.unacked.pop(delivery_tag, None)

    def basic_nack(self, delivery_tag: int = 0, multiple: bool = False, requeue: bool = True) -> None:
        self.record("basic_nack", (delivery_tag,), {"requeue": requeue})
        self._return(delivery_tag, requeue)

    def basic_reject(self, delivery_tag: int = 0, requeue: bool = True) -> None:
        self.record("basic_reject", (delivery_tag,), {"requeue": requeue})
        self._return(delivery_tag, requeue)

    def _return(self, delivery_tag: int, requeue: bool) -> None:
        queue, message = self.unacked.pop(delivery_tag)
        if requeue:
            message.redelivered = True
            with self.connection.broker.lock:
                self.connection.broker.queues[queue].appendleft(message)

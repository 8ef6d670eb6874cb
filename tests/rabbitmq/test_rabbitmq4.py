"""RabbitMQ 4 compatibility and queues nobody reads, over the real (3.10) broker.

- RabbitMQ 4 takes messages of at most 16 MiB by default (3.10: 128 MiB) and closes the channel that publishes a
  larger one; TAG answers carry up to 64 MiB of audio. An answer over the broker's limit reaches its requester as
  an error (it used to be published again forever), a request over it fails its submit. The limit is lowered on
  this test's node for the duration (3.10 reads it whenever a channel opens).
- Request queues name the dead-letter queue as their dead-letter target (RabbitMQ 4 drops a message after 20
  failed deliveries otherwise), and the dead-letter queue is bounded.
- An answer whose reply address is not a TAG response queue is not published into `ResponseQueue`, which nothing
  reads (it used to pile up there).
"""
from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import numpy as np
import pika
import pika.exceptions
import pytest

from tag_rabbitmq.devbroker import BrokerNode, server_script
from tag_rabbitmq.topology import DEAD_LETTER_QUEUE_ARGS
from tag_testkit.broker import ThreadWorker, amqp_channel, broker_client
from tagcore.audio_types import Audio
from tagcore.errors import MessageError
from tagcore.messages import SoundRequest, encode

from .test_consumer_timeout import queue_arguments

pytestmark = pytest.mark.broker
LIMIT = 200_000
"""Bytes: a 1 s tone (64 kB of audio) fits, a 5 s one (320 kB) does not."""


def set_max_message_size(node: BrokerNode, size: int) -> None:
    ctl = server_script().with_name("rabbitmqctl")
    spec = node.spec()
    subprocess.run([str(ctl), "-n", spec.name, "eval", f"application:set_env(rabbit, max_message_size, {size})."],
                   env=node._environment(spec), capture_output=True, timeout=60, check=True)


@pytest.fixture
def small_messages(rabbitmq_node) -> Iterator[None]:
    set_max_message_size(rabbitmq_node, LIMIT)
    try:
        yield
    finally:
        set_max_message_size(rabbitmq_node, 128 * 1024 * 1024)  # RabbitMQ 3.10's default


def test_an_answer_over_the_brokers_size_limit_reaches_the_requester_as_an_error(rabbitmq_node, env,
                                                                                 small_messages):
    worker = ThreadWorker(env, ["tone"])
    transport, client, log = broker_client(env)
    try:
        too_long = SoundRequest("five seconds", 5.0, "tone")
        client.submit(too_long)
        answer = log.wait_responses([too_long.request_id], 60)[too_long.request_id]
        assert not answer.ok and answer.error_code == "malformed_message"
        assert f"over the broker's max_message_size of {LIMIT} bytes" in answer.error_message
        fits = SoundRequest("one second", 1.0, "tone")
        client.submit(fits)
        assert log.wait_responses([fits.request_id], 60)[fits.request_id].ok  # the worker goes on serving
    finally:
        transport.close()
        worker.stop()


def test_a_request_over_the_brokers_size_limit_fails_its_submit(rabbitmq_node, env, small_messages):
    transport, client, log = broker_client(env)
    try:
        large = SoundRequest("with a long audio prompt", 1.0, "tone",
                             audio_prompt=Audio(np.zeros(LIMIT // 4 + 1000, dtype=np.float32), 16000))
        small = SoundRequest("small", 1.0, "tone")
        with pytest.raises(MessageError, match=f"over the broker's max_message_size of {LIMIT}"):
            client.submit(large)
        client.submit(small)  # the client publishes on after the broker closed its channel
        with pytest.raises(MessageError):  # known now: refused before it is sent
            client.submit(SoundRequest("again", 1.0, "tone", audio_prompt=large.audio_prompt))
    finally:
        transport.close()


def test_queues_are_declared_the_way_rabbitmq_4_needs(rabbitmq_node, env):
    worker = ThreadWorker(env, ["tone"])
    try:
        arguments = queue_arguments(rabbitmq_node)
        dead = env["TAG_RABBITMQ_DEAD_LETTER_QUEUE"]
        request = env["TAG_RABBITMQ_REQUEST_QUEUE"] + ".tone"
        for name in [request] + [f"{request}.p{p}" for p in range(1, 10)]:
            assert "x-dead-letter-exchange" in arguments[name] and dead in arguments[name], arguments[name]
        assert all(key in arguments[dead] for key in DEAD_LETTER_QUEUE_ARGS), arguments[dead]
    finally:
        worker.stop()


def test_an_answer_without_a_tag_reply_address_is_not_published(rabbitmq_node, env):
    worker = ThreadWorker(env, ["tone"])
    connection, channel = amqp_channel(rabbitmq_node)
    try:
        channel.confirm_delivery()
        for reply_to in (None, "SomeoneElsesQueue"):
            request = SoundRequest("no reply address", 1.0, "tone", reply_to=reply_to)
            channel.basic_publish("", env["TAG_RABBITMQ_REQUEST_QUEUE"] + ".tone", encode(request),
                                  pika.BasicProperties(delivery_mode=2))
        deadline = time.monotonic() + 30
        while worker.source.unaddressed < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert worker.source.unaddressed == 2
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as missing:
            channel.queue_declare(env["TAG_RABBITMQ_RESPONSE_QUEUE"], passive=True)
        assert missing.value.reply_code == 404  # never even declared
    finally:
        if connection.is_open:
            connection.close()
        worker.stop()

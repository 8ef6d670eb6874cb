"""Poison messages over a real broker: nothing a peer publishes may stop a consumer.

The bodies that used to kill a worker's consumer thread (a header nested 100 000 deep -> RecursionError,
`"sample_rate": Infinity` -> OverflowError) and random garbage from hypothesis go to a live `tag worker`
process and to a named client's reply queue (as the HTTP server and the bot read theirs); each is dead-lettered
with its reason and the consumer keeps answering. A consumer thread that dies anyway ends the process non-zero.
"""
from __future__ import annotations

import struct
import threading

import pika
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tag_rabbitmq.client
import tag_rabbitmq.jobs
from tag_rabbitmq.settings import RabbitSettings
from tag_rabbitmq.topology import DEAD_LETTER_QUEUE_ARGS, declare_request_queue
from tag_testkit.broker import (ThreadWorker, amqp_channel, broker_config, cli_worker, queue_depth, stop_process,
                                wait_consumers, wait_workers)
from tagcore import plugins
from tagcore.cli import cli
from tagcore.messages import encode

from .test_rabbitmq_transport import make_client, tone_request

pytestmark = pytest.mark.broker


def framed(header: bytes) -> bytes:
    return struct.pack(">4sI", b"TAGM", len(header)) + header


DEEP = framed(b"[" * 100_000 + b"]" * 100_000)
RATE_HEADER = (b'{"v":2,"kind":"request","prompt":"p","duration":2,"backend":"tone","audio":'
               b'{"sample_rate":RATE,"channels":1,"frames":0,"dtype":"float32le"}}')
INFINITE_RATE = framed(RATE_HEADER.replace(b"RATE", b"Infinity"))
HUGE_RATE = framed(RATE_HEADER.replace(b"RATE", b"1e999"))
POISON = [DEEP, INFINITE_RATE, HUGE_RATE]


def dead_letters(node, env, count: int, timeout: float = 20.0) -> list[tuple[bytes, str]]:
    """The first `count` dead-lettered bodies with their reasons (waits for them)."""
    connection, channel = amqp_channel(node)
    queue = env["TAG_RABBITMQ_DEAD_LETTER_QUEUE"]
    found: list[tuple[bytes, str]] = []
    try:
        channel.queue_declare(queue, durable=True, arguments=dict(DEAD_LETTER_QUEUE_ARGS))  # as workers do
        for method, properties, body in channel.consume(queue, inactivity_timeout=timeout):
            if method is None:
                break
            channel.basic_ack(method.delivery_tag)
            found.append((body, properties.headers["x-tag-error"]))
            if len(found) == count:
                break
        channel.cancel()
    finally:
        connection.close()
    return found


def publish(node, queue: str, bodies: list[bytes]) -> None:
    connection, channel = amqp_channel(node)
    try:
        channel.confirm_delivery()
        for body in bodies:
            channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
    finally:
        connection.close()


def test_live_worker_dead_letters_poison_and_keeps_answering(rabbitmq_node, env):
    worker = cli_worker(env)
    transport, client, log = make_client(env)
    queue = env["TAG_RABBITMQ_REQUEST_QUEUE"] + ".tone"
    try:
        wait_workers(rabbitmq_node, env, 1)
        for round_ in range(2):  # the same worker survives each poison and answers after it
            publish(rabbitmq_node, queue, POISON)
            request = tone_request(f"after poison {round_}")
            client.submit(request)
            assert log.wait_responses([request.request_id], 30)[request.request_id].ok
        parked = dead_letters(rabbitmq_node, env, 2 * len(POISON))
        assert [body for body, _ in parked] == POISON * 2
        reasons = [reason for _, reason in parked[:3]]
        assert "nests 100000 levels" in reasons[0] and "Infinity" in reasons[1] and "out of range" in reasons[2]
        assert queue_depth(rabbitmq_node, queue)[0] == 0  # nothing requeued
        assert queue_depth(rabbitmq_node, queue + ".workers")[1] == 1  # and the worker is still there
        assert worker.poll() is None
    finally:
        transport.close()
        stop_process(worker)
    assert worker.returncode == 0


garbage = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=200).map(lambda b: b"TAGM" + b),
    st.binary(max_size=200).map(framed),
    st.recursive(st.integers() | st.floats() | st.text(max_size=5) | st.none(),
                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                 max_leaves=10).map(lambda v: framed(repr(v).encode())),
)


def test_fuzzed_bodies_never_stop_a_live_worker(rabbitmq_node, env):
    worker = cli_worker(env)
    transport, client, log = make_client(env)
    queue = env["TAG_RABBITMQ_REQUEST_QUEUE"] + ".tone"
    sent: list[bytes] = []

    @settings(max_examples=60, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(st.lists(garbage, min_size=1, max_size=5))
    def throw(bodies):
        sent.extend(bodies)
        publish(rabbitmq_node, queue, bodies)

    try:
        wait_workers(rabbitmq_node, env, 1)
        throw()
        request = tone_request("after the fuzz")
        client.submit(request)
        assert log.wait_responses([request.request_id], 60)[request.request_id].ok
        assert len(dead_letters(rabbitmq_node, env, len(sent), timeout=30)) == len(sent)
        assert worker.poll() is None and queue_depth(rabbitmq_node, queue + ".workers")[1] == 1
    finally:
        transport.close()
        stop_process(worker)
    assert worker.returncode == 0


def test_named_client_dead_letters_poison_answers_and_keeps_receiving(rabbitmq_node, env):
    """The HTTP server and the bot read a named reply queue: poison there must not stop their answers."""
    worker = ThreadWorker(env, ["tone"])
    transport, client, log = make_client(env, name="http")
    reply_queue = env["TAG_RABBITMQ_RESPONSE_QUEUE"] + ".http"
    poison = [DEEP, framed(b'{"v":2,"kind":"progress","request_id":"a","stage":"x","fraction":1e999}'),
              framed(b'{"v":2,"kind":"response","request_id":"a","ok":false,"timings":{"s":"x"}}')]
    try:
        first = tone_request("first")
        client.submit(first)
        log.wait_responses([first.request_id], 30)
        publish(rabbitmq_node, reply_queue, poison)
        second = tone_request("second")
        client.submit(second)
        assert log.wait_responses([second.request_id], 30)[second.request_id].ok
        assert [body for body, _ in dead_letters(rabbitmq_node, env, 3)] == poison
        assert transport.failure() is None
    finally:
        transport.close()
        worker.stop()
        with amqp_channel(rabbitmq_node)[0] as connection:
            connection.channel().queue_delete(reply_queue)


def test_attempts_are_counted_before_decoding(rabbitmq_node, env, monkeypatch):
    """A body whose decoding crashes the worker every time is parked unread once max_attempts is spent."""
    env["TAG_RABBITMQ_MAX_ATTEMPTS"] = "1"
    queue = env["TAG_RABBITMQ_REQUEST_QUEUE"] + ".tone"
    connection, channel = amqp_channel(rabbitmq_node)
    try:
        declare_request_queue(channel, RabbitSettings.from_config(broker_config(env)), "tone")
        body = encode(tone_request("crashes decoding"))
        channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2, headers={}))
        for _ in range(2):  # two deliveries taken and never acknowledged (a worker killed while decoding)
            taker, taker_channel = amqp_channel(rabbitmq_node)
            method = None
            while method is None:
                method, _, _ = taker_channel.basic_get(queue)
            taker.close()
        calls = []
        monkeypatch.setattr(tag_rabbitmq.jobs, "decode", lambda data: calls.append(data))
        worker = ThreadWorker(env, ["tone"])
        try:
            parked = dead_letters(rabbitmq_node, env, 1)
        finally:
            worker.stop()
        assert parked == [(body, "delivered 3 times and never answered")] and calls == []
    finally:
        connection.close()


class Bug(BaseException):
    """Stands for a bug in a consumer callback: not an Exception, so no per-message handler catches it."""


def run_with_a_dying_consumer(monkeypatch, node, module, queue: str, body: bytes, args: list[str], environ,
                              consumers_of: str = ""):
    """Run `tag ARGS` in this process with `module.decode` raising Bug, publishing `body` into `queue` once
    the command consumes it (or, with `consumers_of`, consumes that queue: a worker's presence queue); returns
    click's result."""
    def crash(data):
        raise Bug("simulated bug in the consumer")

    monkeypatch.setattr(module, "decode", crash)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)

    def poison_when_consuming() -> None:
        wait_consumers(node, consumers_of or queue, 1)
        publish(node, queue, [body])

    threading.Thread(target=poison_when_consuming, daemon=True).start()
    plugins.get_plugin_manager().hook.register_commands(cli=cli)  # `tag serve` comes from the HTTP plugin
    return CliRunner().invoke(cli, args)


def test_dead_consumer_thread_ends_the_worker_with_exit_code_1(rabbitmq_node, env, monkeypatch):
    """A bug that kills the I/O thread must not leave a process with no consumer that exits 0: `tag worker`
    stops and exits 1, so `Restart=always` restarts it."""
    queue = env["TAG_RABBITMQ_REQUEST_QUEUE"] + ".tone"
    result = run_with_a_dying_consumer(
        monkeypatch, rabbitmq_node, tag_rabbitmq.jobs, queue, encode(tone_request("anything")),
        ["worker", "--transport", "rabbitmq", "-b", "tone"],
        {**env, "TAG_PLUGINS": "rabbitmq", "TAG_PLUGIN_MODULES": "tag_testkit.tone"}, consumers_of=queue + ".workers")
    assert result.exit_code == 1, result.output
    assert "broker connection thread died" in result.output and "Bug" in result.output
    assert queue_depth(rabbitmq_node, queue)[0] == 1  # the request went back to the queue, unanswered


def test_dead_letter_reason_for_a_decoding_bug(rabbitmq_node, env, monkeypatch):
    def crash(data):
        raise KeyError("sample_rate")

    monkeypatch.setattr(tag_rabbitmq.jobs, "decode", crash)
    worker = ThreadWorker(env, ["tone"])
    try:
        wait_workers(rabbitmq_node, env, 1)
        publish(rabbitmq_node, env["TAG_RABBITMQ_REQUEST_QUEUE"] + ".tone", [b"x"])
        assert dead_letters(rabbitmq_node, env, 1) == [(b"x", "could not be read: KeyError: 'sample_rate'")]
        assert worker.thread.is_alive() and worker.transport.failure() is None
    finally:
        worker.stop()


def test_dead_reply_consumer_ends_the_http_server_with_exit_code_1(rabbitmq_node, env, monkeypatch, tmp_path):
    """The HTTP server used to keep answering /v1/health "ok" (and every POST 503) with a dead consumer."""
    reply_queue = env["TAG_RABBITMQ_RESPONSE_QUEUE"] + ".http"
    try:  # its job store in a folder of its own, not the user's (which a newer TAG may have migrated)
        result = run_with_a_dying_consumer(monkeypatch, rabbitmq_node, tag_rabbitmq.client, reply_queue,
                                           b"anything", ["serve", "--transport", "rabbitmq"],
                                           {**env, "TAG_HTTP_PORT": "0", "TAG_HTTP_BACKENDS": "tone",
                                            "XDG_DATA_HOME": str(tmp_path)})
    finally:
        with amqp_channel(rabbitmq_node)[0] as connection:
            connection.channel().queue_delete(reply_queue)
    assert result.exit_code == 1, result.output
    assert "broker connection thread died" in result.output

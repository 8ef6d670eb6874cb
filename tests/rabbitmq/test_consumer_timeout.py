"""Request queues carry a consumer timeout sized from the worst case; queues from older versions still work."""
from __future__ import annotations

import subprocess

import pytest

from tag_rabbitmq.devbroker import server_script
from tag_rabbitmq.settings import MIN_CONSUMER_TIMEOUT, RabbitSettings
from tag_testkit.broker import ThreadWorker, amqp_channel, broker_client
from tagcore.config import load_config
from tagcore.errors import ConfigError
from tagcore.messages import SoundRequest


def queue_arguments(node) -> dict[str, str]:
    """Queue name -> its arguments as rabbitmqctl prints them (RabbitMQ 3.10 stores x-consumer-timeout without
    honouring it; 3.12+ honours it, which this machine's broker cannot show)."""
    ctl = server_script().with_name("rabbitmqctl")
    spec = node.spec()
    listing = subprocess.run([str(ctl), "-n", spec.name, "list_queues", "name", "arguments", "--no-table-headers",
                              "--quiet"], env=node._environment(spec), capture_output=True, text=True, timeout=60,
                             check=True).stdout
    return dict(line.split("\t", 1) for line in listing.splitlines() if "\t" in line)


def settings(**env: str) -> RabbitSettings:
    return RabbitSettings.from_config(load_config(environ={"TAG_CONFIG": "/nonexistent/tag.toml", **env}))


def test_the_timeout_follows_the_request_timeout_and_never_undercuts_rabbitmqs_default():
    assert settings().consumer_timeout == MIN_CONSUMER_TIMEOUT  # request_timeout 600 s: 30 min stays
    assert settings(TAG_REQUEST_TIMEOUT="7200").consumer_timeout == 14400  # a 2 h job is answered, not requeued
    assert settings(TAG_RABBITMQ_CONSUMER_TIMEOUT="90000").consumer_timeout == 90000
    with pytest.raises(ConfigError):
        settings(TAG_RABBITMQ_CONSUMER_TIMEOUT="-1")


@pytest.mark.broker
def test_request_queues_are_declared_with_the_timeout(rabbitmq_node, env):
    env = {**env, "TAG_REQUEST_TIMEOUT": "5000"}
    worker = ThreadWorker(env, ["tone"])
    transport, client, log = broker_client(env)
    try:
        request = SoundRequest("timed", 1.0, "tone")
        client.submit(request)
        assert log.wait_responses([request.request_id], 30)[request.request_id].ok
        arguments = queue_arguments(rabbitmq_node)
        prefix = env["TAG_RABBITMQ_REQUEST_QUEUE"] + ".tone"
        levels = [prefix] + [f"{prefix}.p{p}" for p in range(1, 10)]
        assert all("x-consumer-timeout" in arguments[name] and "10000000" in arguments[name] for name in levels)
    finally:
        transport.close()
        worker.stop()


@pytest.mark.broker
def test_a_queue_declared_with_other_arguments_is_used_as_it_is(rabbitmq_node, env, caplog):
    """An existing queue whose arguments differ (RabbitMQ 3.12+ compares x-consumer-timeout; every version
    compares x-max-length, used here) makes the declaration fail with 406: the worker goes on with the queue."""
    connection, channel = amqp_channel(rabbitmq_node)
    channel.queue_declare(env["TAG_RABBITMQ_REQUEST_QUEUE"] + ".tone", durable=True,
                          arguments={"x-queue-type": "quorum", "x-max-length": 1000})
    connection.close()
    worker = ThreadWorker(env, ["tone"])
    transport, client, log = broker_client(env)
    try:
        request = SoundRequest("old queue", 1.0, "tone")
        client.submit(request)
        assert log.wait_responses([request.request_id], 30)[request.request_id].ok
        assert any("exists with other arguments" in r.getMessage() for r in caplog.records)
    finally:
        transport.close()
        worker.stop()

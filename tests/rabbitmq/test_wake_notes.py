"""Wake-up notes over a real broker: an idle worker looks only into the queue a note names, and a note that names
none (an older client) makes it look into every queue.

Sweeps of every queue are switched off here (IDLE_POLL of an hour; a worker still looks into every queue once
when it connects), so a request is taken only if its note reached the worker: without one the test times out.
"""
from __future__ import annotations

import pika
import pytest

import tag_rabbitmq.jobs
from tag_rabbitmq.settings import RabbitSettings
from tag_testkit.broker import ThreadWorker, amqp_channel, broker_config
from tagcore.messages import encode

from .test_rabbitmq_transport import make_client, tone_request

pytestmark = pytest.mark.broker


@pytest.fixture
def no_sweeps(monkeypatch):
    monkeypatch.setattr(tag_rabbitmq.jobs, "IDLE_POLL", 3600.0)


def test_an_idle_worker_takes_requests_of_every_priority_from_their_notes(rabbitmq_node, env, no_sweeps):
    worker = ThreadWorker(env, ["tone"])
    transport, client, log = make_client(env)
    try:
        first = tone_request("first")  # taken by the look on connect or by its note
        client.submit(first)
        log.wait_responses([first.request_id], 30)
        later = [tone_request(f"priority {p}", priority=p) for p in (0, 5, 9, 0)]
        for request in later:
            client.submit(request)
            responses = log.wait_responses([request.request_id], 30)
            assert responses[request.request_id].ok
    finally:
        transport.close()
        worker.stop()


def test_a_note_without_a_queue_makes_the_worker_look_into_every_queue(rabbitmq_node, env, no_sweeps):
    worker = ThreadWorker(env, ["tone"])
    transport, client, log = make_client(env)
    connection, channel = amqp_channel(rabbitmq_node)
    try:
        first = tone_request("first")
        client.submit(first)
        log.wait_responses([first.request_id], 30)  # found empty since: no sweep for an hour now
        settings = RabbitSettings.from_config(broker_config(env))
        silent = tone_request("published without a note", priority=3)
        silent.reply_to = client.reply_queue
        channel.basic_publish("", settings.request_queue_for("tone", 3), encode(silent),
                              pika.BasicProperties(delivery_mode=2))
        channel.basic_publish(settings.control_exchange, "", b"", pika.BasicProperties(type="wake"))
        assert log.wait_responses([silent.request_id], 30)[silent.request_id].ok
    finally:
        connection.close()
        transport.close()
        worker.stop()

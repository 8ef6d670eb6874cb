"""A broker connection lost while a worker takes requests loses none of them.

The broker stopping right after it answered a worker's basic.get (a stress variant of
test_broker_restart_mid_run_loses_nothing, the broker stopped right after the first answer, hit it in about one
restart in 10 to 60) leaves a request that the fetch had taken and marked as running, but that never reached the
worker's service. The broker gives the request back when the connection dies; the worker must then run it, not
take the copy for one of a job it is still running and wait forever for that job's answer. The connection loss is
injected at the worker's "running" announcement, the one broker call between taking a request and handing it
over, so the race happens on every run.
"""
from __future__ import annotations

import collections

import pika
import pytest

from tag_rabbitmq.jobs import RabbitJobSource
from tag_testkit.broker import ThreadWorker, broker_client, broker_env, delete_queues
from tag_testkit.tone import ToneBackend

from .test_rabbitmq_transport import tone_request

pytestmark = pytest.mark.broker


@pytest.mark.parametrize("batch, failing", [(1, 1), (2, 2)], ids=["single", "second-of-a-batch"])
def test_requests_taken_as_the_connection_drops_are_run_after_the_reconnect(rabbitmq_node, monkeypatch, batch,
                                                                            failing):
    env = broker_env(rabbitmq_node, reconnect_max_delay=0.5)  # back quickly, copies held 5.5 s, not 15 s
    announce = RabbitJobSource._announce
    running: list[str] = []

    def announce_dropping_the_connection(self, request_id: str, state: str) -> None:
        if state == "running":
            running.append(request_id)
            if len(running) == failing:
                raise pika.exceptions.StreamLostError("connection lost after basic.get (simulated)")
        announce(self, request_id, state)
    monkeypatch.setattr(RabbitJobSource, "_announce", announce_dropping_the_connection)
    transport, client, log = broker_client(env)
    requests = [tone_request(f"taken as the connection drops ({batch}, {i})") for i in range(batch)]
    for request in requests:  # waiting before the worker starts: its first fetch takes them all at once
        client.submit(request)
    worker = ThreadWorker(env, ["tone"], prefetch=batch)
    try:
        responses = log.wait_responses([r.request_id for r in requests], 30)
        assert all(r.ok for r in responses.values())
        assert worker.source.generation == 2  # the drop did happen, and the second connection served them
        prompts = {r.prompt for r in requests}
        assert collections.Counter(p for p in ToneBackend.started if p in prompts) == {p: 1 for p in prompts}
    finally:
        transport.close()
        worker.stop()
        delete_queues(rabbitmq_node, env)

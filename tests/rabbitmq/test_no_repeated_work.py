"""No request is generated twice: broker restarts mid-job and duplicate copies of a request cost no GPU time."""
from __future__ import annotations

import collections
import time

import pika
import pytest

import tag_rabbitmq.jobs
from tag_testkit.broker import ThreadWorker, amqp_channel, broker_client, broker_env, delete_queues
from tag_testkit.tone import ToneBackend
from tagcore.messages import SoundRequest, encode

pytestmark = pytest.mark.broker


make_client = broker_client


def generations(prompts: list[str]) -> collections.Counter:
    """How often each prompt's generation started (a duplicate counts even while it is still running)."""
    wanted = set(prompts)
    return collections.Counter(p for p in ToneBackend.started if p in wanted)


def test_broker_restart_mid_job_causes_no_duplicate_generation(rabbitmq_node, env):
    worker = ThreadWorker(env, ["tone"], worker_id="w")
    transport, client, log = make_client(env)
    try:
        stamp = time.time()
        # The first job outlasts the broker's restart, so its request is redelivered while it is generated.
        requests = [SoundRequest(f"restart {i} {stamp}", 1.0, "tone", options={"delay": 20.0 if i == 0 else 0.5})
                    for i in range(5)]
        for request in requests:
            client.submit(request)
        first = requests[0].request_id
        log.wait_for(lambda: any(e.stage == "generating" for e in log.progress.get(first, [])), 60)
        rabbitmq_node.stop()
        rabbitmq_node.start()
        ids = [r.request_id for r in requests]
        responses = log.wait_responses(ids, 120)
        assert all(r.ok for r in responses.values())
        time.sleep(2.0)  # room for a late duplicate to show up
        counts = generations([r.prompt for r in requests])
        assert counts == {r.prompt: 1 for r in requests}, counts  # 0 duplicate generations
        assert all(len(log.responses[i]) == 1 for i in ids)
    finally:
        transport.close()
        worker.stop()


def test_copies_of_one_request_are_generated_once(rabbitmq_node, env):
    """A client that republishes after a lost confirm leaves two messages with one request id in the queue."""
    worker = ThreadWorker(env, ["tone"], worker_id="w", prefetch=4)
    transport, client, log = make_client(env)
    try:
        request = SoundRequest(f"copied {time.time()}", 1.0, "tone", options={"delay": 1.0})
        client.submit(request)
        connection, channel = amqp_channel(rabbitmq_node)
        body = encode(request)
        for _ in range(3):
            channel.basic_publish("", env["TAG_RABBITMQ_REQUEST_QUEUE"] + ".tone", body,
                                  pika.BasicProperties(delivery_mode=2))
        connection.close()
        log.wait_responses([request.request_id], 60)
        after = SoundRequest("after the copies", 1.0, "tone")
        client.submit(after)
        log.wait_responses([after.request_id], 60)  # the copies were handled before it (FIFO)
        assert generations([request.prompt])[request.prompt] == 1
    finally:
        transport.close()
        worker.stop()


def test_broker_restart_with_two_workers_causes_no_duplicate_generation(rabbitmq_node, env):
    """After the restart the idle worker gets the redelivered copy of the job the busy one is still generating:
    it must hold it until that one answers, not generate it again."""
    workers = [ThreadWorker(env, ["tone"], worker_id=f"w{i}") for i in range(2)]
    transport, client, log = make_client(env)
    try:
        stamp = time.time()
        long_job = SoundRequest(f"long {stamp}", 1.0, "tone", options={"delay": 25.0})
        client.submit(long_job)
        log.wait_for(lambda: any(e.stage == "generating" for e in log.progress.get(long_job.request_id, [])), 60)
        rabbitmq_node.stop()
        rabbitmq_node.start()
        short = [SoundRequest(f"short {i} {stamp}", 1.0, "tone") for i in range(3)]
        for request in short:
            client.submit(request)
        responses = log.wait_responses([r.request_id for r in [long_job, *short]], 120)
        assert all(r.ok for r in responses.values())
        time.sleep(2.0)
        counts = generations([r.prompt for r in [long_job, *short]])
        assert counts == {r.prompt: 1 for r in [long_job, *short]}, counts
    finally:
        transport.close()
        for worker in workers:
            worker.stop()


def test_a_worker_whose_first_connection_failed_in_setup_serves_at_once(rabbitmq_node, monkeypatch):
    """Two workers starting together can collide creating the catalog stream, and one loses its first connection
    in setup. It served nothing, so it is no worker back from an outage, which takes nothing for
    reconnect_max_delay + 2 s (a minute here)."""
    env = broker_env(rabbitmq_node, reconnect_max_delay=60)
    real_announce = tag_rabbitmq.jobs.announce
    calls = []

    def announce_failing_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise pika.exceptions.ChannelClosedByBroker(541, "INTERNAL_ERROR (simulated)")
        return real_announce(*args, **kwargs)
    monkeypatch.setattr(tag_rabbitmq.jobs, "announce", announce_failing_once)
    worker = ThreadWorker(env, ["tone"])
    transport, client, log = make_client(env)
    try:
        assert worker.source.generation == 2  # the second connection is the one serving
        request = SoundRequest("right after a failed first connection", 1.0, "tone")
        client.submit(request)
        assert log.wait_responses([request.request_id], 30)[request.request_id].ok
    finally:
        transport.close()
        worker.stop()
        delete_queues(rabbitmq_node, env)

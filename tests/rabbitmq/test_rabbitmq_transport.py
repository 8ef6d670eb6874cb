"""The RabbitMQ transport against a real private broker: routing, crashes, restarts, bad input, deadlines."""
from __future__ import annotations

import os
import signal
import threading
import time

import pika
import pytest
from click.testing import CliRunner

from tag_rabbitmq.devbroker import broker_cli
from tag_testkit.broker import (ThreadWorker, amqp_channel, broker_client, broker_config, cli_worker, queue_depth,
                                stop_process, wait_workers)
from tag_testkit.tone import ToneBackend
import tagcore.messages
from tagcore import hookimpl, plugins
from tagcore.messages import SoundRequest, SoundResponse, encode
from tagcore.runtime import build_transport

pytestmark = pytest.mark.broker


make_client = broker_client


def tone_request(prompt: str, *, delay: float = 0.0, backend: str = "tone", **fields) -> SoundRequest:
    return SoundRequest(prompt, 1.0, backend, options={"delay": delay}, **fields)


def test_end_to_end_two_cli_workers(rabbitmq_node, env):
    workers = [cli_worker(env), cli_worker(env)]
    transport, client, log = make_client(env)
    try:
        wait_workers(rabbitmq_node, env, 2)
        served_by: set[str] = set()
        for attempt in range(5):  # both take jobs; on a loaded machine one may be slow to wake for the first round
            requests = [tone_request(f"bell {attempt}.{i}", delay=0.4, seed=i) for i in range(8)]
            for request in requests:
                client.submit(request)
            responses = log.wait_responses([r.request_id for r in requests], 60)
            assert all(r.ok and r.audio.frames == 16000 for r in responses.values())
            served_by |= {r.worker for r in responses.values()}
            if len(served_by) == 2:
                break
        assert len(served_by) == 2, f"one worker took every job of {attempt + 1} rounds"
        first = requests[0].request_id
        assert log.progress[first][0].stage == "queued" and log.progress[first][0].position >= 1
        assert any(e.stage == "generating" for e in log.progress[first])  # worker progress reached us
    finally:
        transport.close()
        for worker in workers:
            stop_process(worker)
    assert all(w.returncode == 0 for w in workers)  # SIGTERM is a clean stop


class OtherTone(ToneBackend):
    name = "othertone"
    aliases = ()


class _OtherPlugin:
    @hookimpl
    def register_backends(self, register):
        register(OtherTone)


def test_routing_by_backend_and_alias(rabbitmq_node, env):
    plugins.register_plugin(_OtherPlugin(), name="othertone-test")
    tone_worker = ThreadWorker(env, ["tone"], worker_id="tone-worker")
    other_worker = ThreadWorker(env, ["othertone"], worker_id="other-worker")
    transport, client, log = make_client(env)
    try:
        requests = [tone_request("a"), tone_request("b", backend="othertone"), tone_request("c", backend="sine")]
        for request in requests:
            client.submit(request)
        responses = log.wait_responses([r.request_id for r in requests], 30)
        assert [responses[r.request_id].worker for r in requests] == ["tone-worker", "other-worker", "tone-worker"]
        assert all(r.ok for r in responses.values())
    finally:
        transport.close()
        tone_worker.stop()
        other_worker.stop()
        plugins.unregister_plugin("othertone-test")


def test_worker_killed_mid_job_is_redelivered_and_answered_once(rabbitmq_node, env):
    doomed = cli_worker(env)
    transport, client, log = make_client(env)
    survivor = None
    try:
        wait_workers(rabbitmq_node, env, 1)
        request = tone_request("crash me", delay=4.0)
        client.submit(request)
        log.wait_for(lambda: any(e.stage == "generating" for e in log.progress[request.request_id]), 30)
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(10)
        survivor = ThreadWorker(env, ["tone"], worker_id="survivor")
        response = log.wait_responses([request.request_id], 30)[request.request_id]
        assert response.ok and response.worker == "survivor"
        time.sleep(0.5)
        assert len(log.responses[request.request_id]) == 1
    finally:
        transport.close()
        if survivor:
            survivor.stop()
        stop_process(doomed)


def test_request_that_keeps_killing_workers_gets_an_error(rabbitmq_node, env):
    env["TAG_RABBITMQ_MAX_ATTEMPTS"] = "2"
    transport, client, log = make_client(env)
    worker_transport = build_transport(broker_config(env), "rabbitmq")
    try:
        request = tone_request("poison")
        client.submit(request)
        for _ in range(2):  # a worker takes it and dies without answering, twice
            source = worker_transport.job_source([ToneBackend.spec({})])
            jobs = source.next_jobs(1, 40)  # a redelivered request first waits for its holder to reappear
            assert [j.request.request_id for j in jobs] == [request.request_id]
            source.close()
        survivor = ThreadWorker(env, ["tone"])
        response = log.wait_responses([request.request_id], 40)[request.request_id]
        survivor.stop()
        assert not response.ok and response.error_code == "generation_failed"
        assert "tried 2 times" in response.error_message
    finally:
        transport.close()
        worker_transport.close()


def test_broker_restart_mid_run_loses_nothing(rabbitmq_node, env):
    worker = ThreadWorker(env, ["tone"], worker_id="w")
    transport, client, log = make_client(env)
    try:
        before = [tone_request(f"before {i}", delay=0.5) for i in range(4)]
        for request in before:
            client.submit(request)
        log.wait_responses([before[0].request_id], 20)
        assert client.outage() is None
        rabbitmq_node.stop()
        deadline = time.monotonic() + 20
        while client.outage() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "the broker cannot be reached" in (client.outage() or "")  # what /v1/health reports
        during = [tone_request(f"during {i}") for i in range(2)]
        submitters = [threading.Thread(target=client.submit, args=(r,)) for r in during]
        for thread in submitters:
            thread.start()  # blocks until the broker is back and confirms
        time.sleep(1.0)
        rabbitmq_node.start()
        for thread in submitters:
            thread.join(40)
        ids = [r.request_id for r in before + during]
        responses = log.wait_responses(ids, 60)
        assert all(r.ok for r in responses.values())
        time.sleep(1.0)
        assert all(len(log.responses[i]) == 1 for i in ids)
        assert client.outage() is None
    finally:
        transport.close()
        worker.stop()


def test_malformed_messages_are_dead_lettered_and_the_worker_keeps_serving(rabbitmq_node, env):
    worker = ThreadWorker(env, ["tone"])
    transport, client, log = make_client(env)
    queue = env["TAG_RABBITMQ_REQUEST_QUEUE"] + ".tone"
    good = encode(tone_request("fine"))
    bad_bodies = [b"", b"hello", b"TAGM\xff\xff\xff\xff", good[:20], good.replace(b'"v":2', b'"v":9'),
                  encode(SoundResponse("x", ok=False)), good[:8] + b"[1,2]" + good[13:]]
    bodies = [bad_bodies[i % len(bad_bodies)] + (b"" if i < len(bad_bodies) else os.urandom(i % 5))
              for i in range(100)]
    connection, channel = amqp_channel(rabbitmq_node)
    try:
        wait_workers(rabbitmq_node, env, 1)
        channel.confirm_delivery()
        for body in bodies:
            channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
        request = tone_request("after the garbage")
        client.submit(request)
        assert log.wait_responses([request.request_id], 30)[request.request_id].ok
        dead_queue = env["TAG_RABBITMQ_DEAD_LETTER_QUEUE"]
        deadline = time.monotonic() + 10
        while queue_depth(rabbitmq_node, dead_queue)[0] < 100 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert queue_depth(rabbitmq_node, dead_queue)[0] == 100
        method, properties, body = channel.basic_get(dead_queue, auto_ack=True)
        assert body == bodies[0] and properties.headers["x-tag-error"]
        assert properties.headers["x-tag-source-queue"] == queue
    finally:
        connection.close()
        transport.close()
        worker.stop()


def test_a_version_1_message_is_dead_lettered_with_the_reason(rabbitmq_node, env):
    """Version 1 carried Telegram's chat_id/user_id; a leftover one from an old client is parked, not run."""
    worker = ThreadWorker(env, ["tone"])
    queue = env["TAG_RABBITMQ_REQUEST_QUEUE"] + ".tone"
    header = b'{"v":1,"kind":"request","prompt":"old","duration":1.0,"backend":"tone","chat_id":5,"user_id":5}'
    connection, channel = amqp_channel(rabbitmq_node)
    try:
        channel.confirm_delivery()
        channel.basic_publish("", queue, b"TAGM" + len(header).to_bytes(4, "big") + header,
                              pika.BasicProperties(delivery_mode=2))
        dead_queue = env["TAG_RABBITMQ_DEAD_LETTER_QUEUE"]
        deadline = time.monotonic() + 20
        while queue_depth(rabbitmq_node, dead_queue)[0] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        method, properties, body = channel.basic_get(dead_queue, auto_ack=True)
        assert method is not None, "the old message was not dead-lettered"
        assert properties.headers["x-tag-error"] == "unsupported message version '1' (this build speaks 2)"
    finally:
        connection.close()
        worker.stop()


def test_request_past_its_deadline_is_answered_timed_out(rabbitmq_node, env):
    worker = ThreadWorker(env, ["tone"])
    transport, client, log = make_client(env)
    try:
        busy = tone_request("long", delay=2.0)
        hurried = tone_request("hurry", deadline=time.time() + 0.5)
        client.submit(busy)
        client.submit(hurried)
        responses = log.wait_responses([busy.request_id, hurried.request_id], 20)
        assert responses[busy.request_id].ok
        assert responses[hurried.request_id].error_code == "timed_out"
    finally:
        transport.close()
        worker.stop()


def test_an_answer_over_the_wire_limit_reaches_the_requester_as_an_error(rabbitmq_node, env, monkeypatch):
    monkeypatch.setattr(tagcore.messages, "MAX_AUDIO_BYTES", 1000)  # a 1 s clip at 16 kHz is 64000 bytes
    worker = ThreadWorker(env, ["tone"])
    transport, client, log = make_client(env)
    try:
        request = tone_request("too long for the wire")
        client.submit(request)
        response = log.wait_responses([request.request_id], 20)[request.request_id]
        assert not response.ok and response.audio is None
        assert response.error_code == "malformed_message" and "64000 bytes" in response.error_message
    finally:
        transport.close()
        worker.stop()


def test_named_client_gets_answers_that_arrived_while_it_was_down(rabbitmq_node, env):
    transport, client, log = make_client(env, name="telegram")
    request = tone_request("for later", context={"chat_id": 42})
    client.submit(request)
    transport.close()  # the bot goes down before any worker answers
    worker = ThreadWorker(env, ["tone"])
    try:
        deadline = time.monotonic() + 20
        queue = env["TAG_RABBITMQ_RESPONSE_QUEUE"] + ".telegram"
        while queue_depth(rabbitmq_node, queue)[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        transport, client, log = make_client(env, name="telegram")  # the bot comes back
        response = log.wait_responses([request.request_id], 20)[request.request_id]
        assert response.ok and response.context == {"chat_id": 42}
    finally:
        transport.close()
        worker.stop()
        _, channel = amqp_channel(rabbitmq_node)
        channel.queue_delete(env["TAG_RABBITMQ_RESPONSE_QUEUE"] + ".telegram")
        channel.connection.close()


def test_broker_status_command(rabbitmq_node):
    result = CliRunner().invoke(broker_cli, ["status", "--dir", str(rabbitmq_node.state_dir)])
    assert result.exit_code == 0, result.output
    assert "accepting connections" in result.output and str(rabbitmq_node.spec().amqp_port) in result.output

"""What the transport asks of the broker, checked on a fake one (fake_broker.py): no broker process, deterministic.

- Submits arriving together are all published before the first confirm comes back, and one `multiple` ack settles
  them (one wake-up note per queue); refused and lost publishes go out again, a lost one marked as a possible copy.
- RabbitMQ 4 refuses global QoS and transient non-exclusive queues by default: no declaration or QoS of a client,
  a job source or a catalog follower uses them, nor any call written in the transport, the tests or the benchmarks.
- A worker gives back what it did not process with basic.nack (RabbitMQ 4.3 counts basic.reject and lost connections
  as failed deliveries toward the delivery limit), also the deliveries it held when it closes.
- An answer whose reply address is not a TAG response queue is counted, not published.
"""
from __future__ import annotations

import ast
import socket
import threading
from pathlib import Path

import pika
import pytest

from tag_rabbitmq.catalog import CatalogFollower
from tag_rabbitmq.client import RabbitClient
from tag_rabbitmq.jobs import RabbitJobSource
from tag_rabbitmq.settings import RabbitSettings
from tag_rabbitmq.topology import REPUBLISHED_HEADER
from tag_testkit.tone import ToneBackend
from tagcore.catalog import BackendCatalog
from tagcore.config import load_config
from tagcore.errors import GenerationFailed
from tagcore.messages import SoundRequest, SoundResponse, encode

from .fake_broker import FakeBroker, Message


@pytest.fixture
def settings() -> RabbitSettings:
    return RabbitSettings.from_config(load_config(environ={"TAG_CONFIG": "/nonexistent/tag-test.toml"}))


@pytest.fixture
def params() -> pika.ConnectionParameters:
    """A port nothing listens on: the transport only probes it while "reconnecting" to the fake broker."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return pika.ConnectionParameters(host="127.0.0.1", port=port)


def request_publishes(broker: FakeBroker, request_id: str | None = None) -> list:
    return [call for call in broker.named("impl.basic_publish") if call.kwargs["properties"].type == "request"
            and request_id in (None, call.kwargs["properties"].correlation_id)]


def wake_notes(broker: FakeBroker) -> int:
    return len([c for c in broker.named("basic_publish") if c.kwargs["properties"].type == "wake"])


def submit_in_threads(client: RabbitClient, requests: list[SoundRequest]) -> tuple[list[threading.Thread], list]:
    errors: list[BaseException] = []

    def submit(request: SoundRequest) -> None:
        try:
            client.submit(request)
        except BaseException as exc:
            errors.append(exc)
    threads = [threading.Thread(target=submit, args=(r,)) for r in requests]
    for thread in threads:
        thread.start()
    return threads, errors


def test_submits_at_once_go_out_before_any_confirm_and_one_ack_settles_them(monkeypatch, params, settings):
    broker = FakeBroker(confirms="hold").install(monkeypatch)
    client = RabbitClient(params, settings, name="pipelined")
    try:
        requests = [SoundRequest(f"at once {i}", 1.0, "tone") for i in range(50)]
        threads, errors = submit_in_threads(client, requests)
        broker.wait_for(lambda: len(request_publishes(broker)) == 50)  # no confirm has come back yet
        assert all(thread.is_alive() for thread in threads)  # and no submit returned before its confirm
        broker.confirms = "ack"
        for thread in threads:
            thread.join(10)
        assert errors == [] and not any(thread.is_alive() for thread in threads)
        assert len(request_publishes(broker)) == 50  # nothing published twice
        broker.wait_for(lambda: wake_notes(broker) == 1)  # one queue, one batch of confirms: one wake-up note
    finally:
        client.close()


def test_refused_requests_are_published_again(monkeypatch, params, settings):
    broker = FakeBroker(confirms="nack").install(monkeypatch)
    client = RabbitClient(params, settings, name="refused")
    try:
        request = SoundRequest("refused once", 1.0, "tone")
        threads, errors = submit_in_threads(client, [request])
        broker.wait_for(lambda: len(request_publishes(broker)) >= 1)
        broker.confirms = "ack"
        threads[0].join(10)
        assert errors == [] and not threads[0].is_alive()
        assert len(request_publishes(broker, request.request_id)) >= 2
    finally:
        client.close()


def test_a_request_unconfirmed_when_the_connection_drops_goes_out_again_marked(monkeypatch, params, settings):
    broker = FakeBroker(confirms="hold").install(monkeypatch)
    client = RabbitClient(params, settings, name="lost")
    try:
        request = SoundRequest("lost confirm", 1.0, "tone")
        threads, errors = submit_in_threads(client, [request])
        broker.wait_for(lambda: len(request_publishes(broker)) == 1)
        first = request_publishes(broker)[0]
        assert not (first.kwargs["properties"].headers or {}).get(REPUBLISHED_HEADER)  # a first copy
        broker.connections[0].lost = True
        broker.wait_for(lambda: len(request_publishes(broker)) == 2)
        again = request_publishes(broker)[1]
        assert again.connection == 2 and again.kwargs["properties"].headers[REPUBLISHED_HEADER] == 1
        broker.confirms = "ack"
        threads[0].join(10)
        assert errors == [] and not threads[0].is_alive()
    finally:
        client.close()


def test_declarations_and_qos_are_what_rabbitmq_4_accepts(monkeypatch, params, settings):
    broker = FakeBroker().install(monkeypatch)
    named, private = RabbitClient(params, settings, name="http"), RabbitClient(params, settings, name=None)
    source = RabbitJobSource(params, settings, [ToneBackend.spec({})], prefetch=2)
    follower = CatalogFollower(params, settings, BackendCatalog())
    try:
        for client in (named, private):
            client.add_listener(lambda event: None)
            client.submit(SoundRequest("declares", 1.0, "tone", priority=4))
        jobs = source.next_jobs(2, 10)
        assert len(jobs) == 2
        for job in jobs:
            job.respond(SoundResponse.failure(job.request, GenerationFailed("done"), worker="w"))
        assert follower.connected.wait(10)
        declares = broker.named("queue_declare")
        assert len(declares) > 20
        shared_transient = [c.args[0] for c in declares
                            if not (c.kwargs["passive"] or c.kwargs["durable"] or c.kwargs["exclusive"])]
        assert shared_transient == []
        qos = broker.named("basic_qos")
        assert qos and not any(c.kwargs["global_qos"] for c in qos)
        assert all(c.kwargs.get("durable") for c in broker.named("exchange_declare"))
    finally:
        for thing in (named, private, source, follower):
            thing.close()


def worker_with_a_request(monkeypatch, params, settings, reply_to: str | None = None,
                          redelivered: bool = False) -> tuple[FakeBroker, RabbitJobSource, SoundRequest]:
    """A job source on a fake broker whose tone queue holds one request (put there directly)."""
    broker = FakeBroker().install(monkeypatch)
    request = SoundRequest("for a worker", 1.0, "tone", reply_to=reply_to or f"{settings.response_queue}.x")
    queue = settings.request_queue_for("tone")
    broker.queues[queue].append(Message(
        encode(request), pika.BasicProperties(correlation_id=request.request_id), redelivered=redelivered))
    return broker, RabbitJobSource(params, settings, [ToneBackend.spec({})]), request


def test_a_worker_gives_back_an_unprocessed_job_with_nack(monkeypatch, params, settings):
    broker, source, request = worker_with_a_request(monkeypatch, params, settings)
    try:
        (job,) = source.next_jobs(1, 10)
        assert job.request.request_id == request.request_id
        job.release()
        assert [c.kwargs["requeue"] for c in broker.named("basic_nack")] == [True]
        assert broker.named("basic_reject") == []
    finally:
        source.close()


def test_a_closing_worker_gives_back_what_it_held_with_nack(monkeypatch, params, settings):
    broker, source, request = worker_with_a_request(monkeypatch, params, settings, redelivered=True)
    try:
        assert source.next_jobs(1, 0.5) == []  # redelivered: maybe running elsewhere, so held unstarted
        broker.wait_for(lambda: len(broker.named("basic_get")) == 1)
    finally:
        source.close()
    assert [c.kwargs["requeue"] for c in broker.named("basic_nack")] == [True]
    assert broker.named("basic_reject") == []


def test_an_answer_without_a_tag_reply_address_is_counted_not_published(monkeypatch, params, settings):
    broker, source, request = worker_with_a_request(monkeypatch, params, settings, reply_to="SomeoneElsesQueue")
    try:
        (job,) = source.next_jobs(1, 10)
        job.respond(SoundResponse.failure(job.request, GenerationFailed("done"), worker="w"))
        assert source.unaddressed == 1
        answers = [c for c in broker.named("basic_publish") if c.kwargs["properties"].type == "response"]
        assert answers == []  # to no queue at all
        assert len(broker.named("basic_ack")) == 1  # the request is done all the same
    finally:
        source.close()


ROOT = Path(__file__).resolve().parents[2]


def test_no_code_here_declares_a_transient_shared_queue_or_asks_for_global_qos():
    """The fake above records what the transport does at run time; this reads every declaration and QoS call in
    the transport, the tests, the test kit and the benchmarks: each queue_declare is passive, durable or
    exclusive, and no basic_qos asks for global_qos."""
    found: list[str] = []
    for path in [*ROOT.glob("transports/**/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("benchmarks/**/*.py")]:
        found += bad_declarations(path.read_text(), str(path.relative_to(ROOT)))
    assert found == []
    assert bad_declarations("c.queue_declare('q')\nc.basic_qos(prefetch_count=1, global_qos=True)", "x") == [
        "x:1 declares a queue that is neither durable nor exclusive", "x:2 asks for global QoS"]


def bad_declarations(source: str, name: str) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(source, name)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        flags = {k.arg: k.value.value if isinstance(k.value, ast.Constant) else k.value for k in node.keywords}
        if node.func.attr == "queue_declare" and not any(flags.get(k) is True
                                                         for k in ("passive", "durable", "exclusive")):
            found.append(f"{name}:{node.lineno} declares a queue that is neither durable nor exclusive")
        if node.func.attr == "basic_qos" and flags.get("global_qos", False) is not False:
            found.append(f"{name}:{node.lineno} asks for global QoS")
    return found

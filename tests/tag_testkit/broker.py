"""A private RabbitMQ node for tests (the same code as `tag broker start`), plus per-test queue isolation.

Use the `rabbitmq_node` fixture (session scope: one node for the whole run, ~5-8 s to start) and
`broker_env(node, prefix)` to give each test its own queue names, so tests never see each other's messages and
clean up over AMQP (`delete_queues`) instead of the slow rabbitmqctl. Tests skip with a reason when the
rabbitmq-server package is missing.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pika
import pytest

from tag_rabbitmq.devbroker import INSTALL_HINT, BrokerNode, server_script
from tag_rabbitmq.jobs import RabbitJobSource
from tagcore.config import Config, load_config
from tagcore.messages import ProgressEvent, SoundResponse
from tagcore.runtime import build_backend, build_transport
from tagcore.worker import GeneratorService, served_specs


def require_rabbitmq_server() -> None:
    if server_script() is None:
        pytest.skip(f"rabbitmq-server is not installed ({INSTALL_HINT})")


@pytest.fixture(scope="session")
def rabbitmq_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerNode]:
    """A running private broker node; stopped and deleted after the session."""
    require_rabbitmq_server()
    node = BrokerNode(tmp_path_factory.mktemp("rabbitmq"))
    node.start()
    try:
        yield node
    finally:
        node.destroy()


def broker_env(node: BrokerNode, prefix: str | None = None, **settings: object) -> dict[str, str]:
    """TAG_* variables pointing at `node` with queue names unique to one test (plus extra [rabbitmq] settings)."""
    prefix = prefix or f"t{uuid.uuid4().hex[:8]}"
    env = {
        "TAG_CONFIG": "/nonexistent/tag-test-config.toml",  # never pick up the developer's own config
        "TAG_BROKER_URL": node.spec().url,
        "TAG_RABBITMQ_REQUEST_QUEUE": f"{prefix}Request",
        "TAG_RABBITMQ_RESPONSE_QUEUE": f"{prefix}Response",
        "TAG_RABBITMQ_DEAD_LETTER_QUEUE": f"{prefix}Dead",
        "TAG_RABBITMQ_CATALOG_QUEUE": f"{prefix}Catalog",
    }
    env.update({f"TAG_RABBITMQ_{key.upper()}": str(value) for key, value in settings.items()})
    return env


def broker_config(env: Mapping[str, str]) -> Config:
    return load_config(environ=dict(env))


def amqp_channel(node: BrokerNode) -> tuple[pika.BlockingConnection, "pika.adapters.blocking_connection.BlockingChannel"]:
    connection = pika.BlockingConnection(pika.URLParameters(node.spec().url))
    return connection, connection.channel()


def queue_depth(node: BrokerNode, queue: str) -> tuple[int, int]:
    """(ready messages, consumers) of a queue, (0, 0) when it does not exist."""
    connection, channel = amqp_channel(node)
    try:
        ok = channel.queue_declare(queue, passive=True).method
        return ok.message_count, ok.consumer_count
    except pika.exceptions.ChannelClosedByBroker:
        return 0, 0
    finally:
        if connection.is_open:
            connection.close()


def delete_queues(node: BrokerNode, env: Mapping[str, str], backends: tuple[str, ...] = ("tone",),
                  names: tuple[str, ...] = ()) -> None:
    """Delete a test's queues over AMQP (private reply queues expire by themselves)."""
    request = env["TAG_RABBITMQ_REQUEST_QUEUE"]
    response = env["TAG_RABBITMQ_RESPONSE_QUEUE"]
    connection, channel = amqp_channel(node)
    try:
        queues = [f"{request}.{b}{suffix}" for b in backends
                  for suffix in ("", ".workers", *(f".p{p}" for p in range(1, 10)))]
        for name in (env["TAG_RABBITMQ_DEAD_LETTER_QUEUE"], env["TAG_RABBITMQ_CATALOG_QUEUE"], response, *queues,
                     *names):
            channel.queue_delete(name)
        channel.exchange_delete(f"{request}.control")
    finally:
        connection.close()


class EventLog:
    """A client listener recording every event, with waits for responses."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.responses: dict[str, list[SoundResponse]] = defaultdict(list)
        self.progress: dict[str, list[ProgressEvent]] = defaultdict(list)

    def __call__(self, event) -> None:
        with self.cond:
            if isinstance(event, SoundResponse):
                self.responses[event.request_id].append(event)
            else:
                self.progress[event.request_id].append(event)
            self.cond.notify_all()

    def wait_for(self, predicate, timeout: float) -> None:
        with self.cond:
            assert self.cond.wait_for(predicate, timeout), "timed out waiting for transport events"

    def wait_responses(self, ids: Sequence[str], timeout: float) -> dict[str, SoundResponse]:
        self.wait_for(lambda: all(self.responses.get(i) for i in ids), timeout)
        return {i: self.responses[i][0] for i in ids}


def broker_client(env: Mapping[str, str], name: str | None = None):
    """(transport, client, EventLog) on the test's queues; close the transport when done."""
    transport = build_transport(broker_config(env), "rabbitmq")
    client = transport.client(name=name)
    log = EventLog()
    client.add_listener(log)
    return transport, client, log


class ThreadWorker:
    """A GeneratorService on its own transport (own connections) in a thread of the test process."""

    def __init__(self, env: dict[str, str], backends: Sequence[str] = ("tone",), *, worker_id: str = "",
                 prefetch: int = 1) -> None:
        self.config = broker_config(env)
        self.transport = build_transport(self.config, "rabbitmq")
        loaded = {name: build_backend(name, self.config) for name in backends}
        source = self.transport.job_source(served_specs(loaded), prefetch=prefetch)
        assert isinstance(source, RabbitJobSource)  # what build_transport(..., "rabbitmq") makes; it has `connected`
        self.source = source
        assert self.source.connected.wait(30), "the worker never connected"  # consuming and announced from here
        self.service = GeneratorService({b.name: b for b in loaded.values()}, self.source, self.config,
                                        worker_id=worker_id or None, max_batch=prefetch)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.service.run, args=(self.stop_event, 0.1), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)
        self.source.close()
        self.transport.close()


def cli_worker(env: dict[str, str], backend: str = "tone", *extra: str) -> subprocess.Popen:
    """`tag worker --transport rabbitmq -b BACKEND [EXTRA...]` as a separate process (so it can be killed with -9)."""
    tag = Path(sys.executable).with_name("tag")
    child_env = {**os.environ, **env, "TAG_PLUGINS": "rabbitmq", "TAG_PLUGIN_MODULES": "tag_testkit.tone"}
    return subprocess.Popen([str(tag), "worker", "--transport", "rabbitmq", "-b", backend, *extra], env=child_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def wait_workers(node, env: Mapping[str, str], count: int, backend: str = "tone", timeout: float = 60.0) -> None:
    """Wait until `count` workers serve `backend` (they show as consumers of its presence queue)."""
    wait_consumers(node, f"{env['TAG_RABBITMQ_REQUEST_QUEUE']}.{backend}.workers", count, timeout)


def wait_consumers(node, queue: str, count: int, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if queue_depth(node, queue)[1] >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"{count} consumer(s) never attached to {queue}")


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

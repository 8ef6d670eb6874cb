"""Workers announce their backend specs over the broker; a frontend's catalog reads them at start and follows."""
from __future__ import annotations

import logging
import time

import pika
import pytest

from tag_testkit.broker import ThreadWorker, amqp_channel, broker_config
from tagcore.runtime import build_transport

pytestmark = pytest.mark.broker


def wait_until(predicate, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "the catalog never reached the expected state"
        time.sleep(0.1)


def weights(tmp_path, name: str, max_duration: float) -> str:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "tone.json").write_text(f'{{"gain": 1.0, "max_duration": {max_duration}}}')
    return str(folder)


def test_a_frontend_learns_earlier_and_later_workers_and_who_is_live(rabbitmq_node, env, tmp_path):
    env = {**env, "TAG_RABBITMQ_CATALOG_REFRESH": "0.2"}
    early = ThreadWorker({**env, "TAG_TONE_WEIGHTS": weights(tmp_path, "short", 7.0)}, ["tone"])
    early.stop()  # announced, then gone: nobody serves tone any more
    transport = build_transport(broker_config(env), "rabbitmq")
    try:
        catalog = transport.catalog()  # only what workers announced: nothing is installed-only here
        entry = catalog.entry("sine")  # aliases come from the announced spec
        assert entry.announced and entry.spec.max_duration == 7.0
        wait_until(lambda: not catalog.is_available("tone"))
        later = ThreadWorker({**env, "TAG_TONE_WEIGHTS": weights(tmp_path, "long", 42.0)}, ["tone"])
        try:
            wait_until(lambda: catalog.is_available("tone") and catalog.resolve("tone").max_duration == 42.0)
        finally:
            later.stop()
        wait_until(lambda: not catalog.is_available("tone"))
    finally:
        transport.close()


def test_two_workers_disagreeing_are_logged_and_the_newest_wins(rabbitmq_node, env, tmp_path, caplog):
    first = ThreadWorker({**env, "TAG_TONE_WEIGHTS": weights(tmp_path, "a", 8.0)}, ["tone"], worker_id="w-a")
    transport = build_transport(broker_config(env), "rabbitmq")
    try:
        catalog = transport.catalog()
        assert catalog.resolve("tone").max_duration == 8.0
        with caplog.at_level(logging.WARNING, logger="tagcore.catalog"):
            second = ThreadWorker({**env, "TAG_TONE_WEIGHTS": weights(tmp_path, "b", 9.0)}, ["tone"],
                                  worker_id="w-b")
            wait_until(lambda: catalog.resolve("tone").max_duration == 9.0)
        second.stop()
        assert "workers disagree about backend 'tone'" in caplog.text
    finally:
        first.stop()
        transport.close()


def test_a_malformed_announcement_is_ignored_with_a_warning(rabbitmq_node, env, caplog):
    connection, channel = amqp_channel(rabbitmq_node)
    try:
        channel.queue_declare(env["TAG_RABBITMQ_CATALOG_QUEUE"], durable=True, arguments={
            "x-queue-type": "stream", "x-max-length-bytes": 16 * 1024 * 1024,
            "x-stream-max-segment-size-bytes": 1024 * 1024})
        channel.basic_publish("", env["TAG_RABBITMQ_CATALOG_QUEUE"], b'{"v": 1, "name": "bad"}',
                              pika.BasicProperties(type="backend-spec", headers={"x-tag-worker": "evil"}))
    finally:
        connection.close()
    worker = ThreadWorker(env, ["tone"])
    transport = build_transport(broker_config(env), "rabbitmq")
    try:
        with caplog.at_level(logging.WARNING, logger="tag_rabbitmq.catalog"):
            catalog = transport.catalog()
        assert catalog.names() == ["tone"]
        assert "ignored a malformed backend announcement from evil" in caplog.text
    finally:
        worker.stop()
        transport.close()


def test_history_is_not_a_disagreement_and_reading_resumes_after_a_reconnect(rabbitmq_node, env, tmp_path, caplog):
    for name, limit in (("old", 8.0), ("new", 9.0)):  # one worker reloaded with other weights, before we start
        ThreadWorker({**env, "TAG_TONE_WEIGHTS": weights(tmp_path, name, limit)}, ["tone"]).stop()
    transport = build_transport(broker_config(env), "rabbitmq")
    try:
        with caplog.at_level(logging.WARNING, logger="tagcore.catalog"):
            catalog = transport.catalog()
        assert catalog.resolve("tone").max_duration == 9.0 and not caplog.text
        follower = transport._follower
        assert isinstance(follower._next_offset, int) and follower._next_offset >= 3  # two specs and a marker read
    finally:
        transport.close()


def test_a_reconnected_follower_does_not_read_the_stream_again(rabbitmq_node, env):
    ThreadWorker(env, ["tone"]).stop()
    transport = build_transport(broker_config(env), "rabbitmq")
    try:
        catalog = transport.catalog()
        follower = transport._follower
        seen = []
        original = catalog.announce
        catalog.announce = lambda spec, worker="", **kw: (seen.append(spec.name), original(spec, worker, **kw))
        generation = follower.generation
        rabbitmq_node.stop()  # the broker restarts; the follower reconnects
        rabbitmq_node.start()
        wait_until(lambda: follower.generation > generation and follower.connected.is_set(), 60)
        worker = ThreadWorker(env, ["tone"])  # a new announcement after the reconnect
        try:
            wait_until(lambda: seen == ["tone"] and catalog.is_available("tone"))
        finally:
            worker.stop()
        assert seen == ["tone"]  # only the new one: nothing read twice
    finally:
        transport.close()

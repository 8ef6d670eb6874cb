"""Serving again soon after a broker restart.

A worker and a client answer a request submitted right after the broker is back within RECOVERY s of it
accepting connections. They used to take 12-30 s: the reconnect backoff had grown to `reconnect_max_delay` (10 s)
while the broker was down, and a worker back from an outage took nothing for `reconnect_max_delay` + 2 s. Now they
knock on the port while it refuses connections and reconnect when it opens, and only a delivery that may be running
on another worker waits. The bound is generous (a loaded CI machine); the restart itself is not counted.
"""
from __future__ import annotations

import time

import pytest

from tag_testkit.broker import ThreadWorker, broker_client
from tagcore.messages import SoundRequest

pytestmark = pytest.mark.broker

RECOVERY = 10.0
"""Seconds from the broker accepting connections to the answer; about 0.5 s on an idle 2-core machine."""


def test_a_request_submitted_after_a_broker_restart_is_answered_soon(rabbitmq_node, env):
    worker = ThreadWorker(env, ["tone"], worker_id="w")
    transport, client, log = broker_client(env)
    try:
        before = SoundRequest("before the restart", 1.0, "tone")
        client.submit(before)
        assert log.wait_responses([before.request_id], 30)[before.request_id].ok
        rabbitmq_node.stop()
        time.sleep(4.0)  # down long enough for a backoff to grow
        rabbitmq_node.start()
        back = time.monotonic()
        after = SoundRequest("after the restart", 1.0, "tone")
        client.submit(after)
        assert log.wait_responses([after.request_id], 60)[after.request_id].ok
        elapsed = time.monotonic() - back
        assert elapsed < RECOVERY, f"answered {elapsed:.1f} s after the broker was back"
    finally:
        transport.close()
        worker.stop()

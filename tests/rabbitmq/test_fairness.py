"""Fair ordering over a real broker: one user's backlog does not hold up another user, and sources have ranks."""
from __future__ import annotations

import threading

import pytest

from tag_testkit.broker import EventLog, ThreadWorker, broker_client
from tagcore.fairness import FairShare
from tagcore.messages import SoundRequest, SoundResponse

pytestmark = pytest.mark.broker


class Finished:
    """Request ids in the order their answers arrived."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, event) -> None:
        if isinstance(event, SoundResponse):
            with self.lock:
                self.order.append(event.request_id)


def make_client(env):
    transport, client, log = broker_client(env)
    finished = Finished()
    client.add_listener(finished)
    return transport, client, log, finished


def started(log: EventLog, requests: list[SoundRequest]) -> int:
    return sum(any(e.stage == "generating" for e in log.progress.get(r.request_id, [])) for r in requests)


@pytest.mark.parametrize("workers", [1, 2])
def test_twenty_queued_jobs_delay_another_users_job_by_at_most_one(rabbitmq_node, env, workers):
    pool = [ThreadWorker(env, ["tone"], worker_id=f"w{i}") for i in range(workers)]
    transport, client, log, finished = make_client(env)
    fair = FairShare()
    client.add_listener(fair.on_event)
    try:
        alice = [SoundRequest(f"alice {i}", 1.0, "tone", options={"delay": 0.4}) for i in range(20)]
        for request in alice:
            fair.assign(request, "alice")
            client.submit(request)
        log.wait_for(lambda: started(log, alice) >= workers, 60)  # every worker is busy with alice's work
        bob = SoundRequest("bob", 1.0, "tone", options={"delay": 0.4})
        fair.assign(bob, "bob")
        client.submit(bob)
        log.wait_responses([r.request_id for r in alice + [bob]], 120)
        before_bob = finished.order.index(bob.request_id)
        # What ran when bob arrived (one job per worker), plus at most one more of alice's.
        assert before_bob <= workers + 1, finished.order
    finally:
        transport.close()
        for worker in pool:
            worker.stop()


def test_api_requests_outrank_bot_requests(rabbitmq_node, env):
    worker = ThreadWorker(env, ["tone"], worker_id="w")
    transport, client, log, finished = make_client(env)
    try:
        busy = SoundRequest("busy", 1.0, "tone", options={"delay": 2.0})
        client.submit(busy)
        log.wait_for(lambda: started(log, [busy]) == 1, 60)
        bot, api = FairShare(boost=0), FairShare(boost=2)
        from_bot = SoundRequest("from the bot", 1.0, "tone")
        from_api = SoundRequest("from the api", 1.0, "tone")
        bot.assign(from_bot, "chat 1")
        client.submit(from_bot)
        api.assign(from_api, "10.0.0.1")
        client.submit(from_api)
        assert from_api.priority > from_bot.priority
        log.wait_responses([busy.request_id, from_bot.request_id, from_api.request_id], 60)
        assert finished.order.index(from_api.request_id) < finished.order.index(from_bot.request_id)
    finally:
        transport.close()
        worker.stop()

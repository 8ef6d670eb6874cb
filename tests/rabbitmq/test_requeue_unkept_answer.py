"""An answer that a listener could not keep (the HTTP job store down) goes back to the named reply queue and is
delivered again, instead of being acknowledged and lost."""
from __future__ import annotations

from tag_testkit.broker import EventLog, ThreadWorker, broker_client, queue_depth
from tagcore.messages import SoundRequest, SoundResponse
from tagcore.transport import Event


def test_an_answer_a_listener_failed_on_is_redelivered_then_acked(rabbitmq_node, env):
    worker = ThreadWorker(env, ["tone"], worker_id="w")
    transport, client, _ = broker_client(env, name="keeper")
    tries: list[str] = []
    kept = EventLog()

    def flaky_store(event: Event) -> None:
        if isinstance(event, SoundResponse):
            tries.append(event.request_id)
            if len(tries) == 1:
                raise RuntimeError("the store is down")
            kept(event)

    client.add_listener(flaky_store)
    try:
        request = SoundRequest("a hum", 1.0, "tone")
        client.submit(request)
        assert kept.wait_responses([request.request_id], 60)[request.request_id].ok
        assert tries == [request.request_id] * 2  # refused once, then delivered again and kept
    finally:
        transport.close()  # anything still unacknowledged would be ready again now
        worker.stop()
    assert queue_depth(rabbitmq_node, f"{env['TAG_RABBITMQ_RESPONSE_QUEUE']}.keeper")[0] == 0  # acked at last

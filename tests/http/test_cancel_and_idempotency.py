"""Cancelling jobs over the REST API of a running server."""
from __future__ import annotations

import time
from typing import Any

import httpx

from tag_testkit.tone import ToneBackend

LONG = 100.0


def wait_state(client: httpx.Client, job_id: str, states: tuple[str, ...], timeout: float = 30) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = client.get(f"/v1/jobs/{job_id}").json()
        if status["state"] in states:
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {states}: {status}")


def test_delete_cancels_running_and_queued_jobs_and_the_worker_moves_on(make_server: Any) -> None:
    with make_server({"max_active_per_client": 10}) as srv, srv.client() as c:
        started = len(ToneBackend.batches)
        running = c.post("/v1/jobs", json={"prompt": "long", "duration": 1, "options": {"delay": LONG}}).json()
        wait_state(c, running["id"], ("running",))
        queued = c.post("/v1/jobs", json={"prompt": "queued", "duration": 1, "options": {"delay": LONG}}).json()
        after = c.post("/v1/jobs", json={"prompt": "after", "duration": 1}).json()
        for job in (queued, running):
            answer = c.delete(f"/v1/jobs/{job['id']}")
            assert answer.status_code == 200, answer.text
            assert answer.json()["state"] == "cancelled"
            assert answer.json()["error"]["code"] == "cancelled"
        assert c.delete(f"/v1/jobs/{queued['id']}").status_code == 200  # repeating is harmless
        assert wait_state(c, after["id"], ("done", "failed"), timeout=LONG / 2)["state"] == "done"
        assert len(ToneBackend.batches) == started + 2  # the queued job never reached the backend
        assert c.get(f"/v1/jobs/{running['id']}/audio").status_code == 409
        late = c.delete(f"/v1/jobs/{after['id']}")
        assert late.status_code == 409 and late.json()["error"]["code"] == "already_finished"
        assert c.delete("/v1/jobs/" + "0" * 32).status_code == 404

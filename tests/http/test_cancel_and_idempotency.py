"""Cancelling jobs, start timeouts (a job not started in time expires without running) and idempotency, over the
REST API of a running server."""
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


def test_idempotency_key_and_put_create_a_job_once(make_server: Any) -> None:
    with make_server({"max_active_per_client": 10}) as srv, srv.client() as c:
        started = len(ToneBackend.batches)
        body = {"prompt": "once", "duration": 1, "seed": 3}
        first = c.post("/v1/jobs", json=body, headers={"Idempotency-Key": "order-17"})
        assert first.status_code == 202
        retry = c.post("/v1/jobs", json=body, headers={"Idempotency-Key": "order-17"})
        assert retry.status_code == 200 and retry.headers["Idempotent-Replayed"] == "true"
        assert retry.json()["id"] == first.json()["id"]
        conflict = c.post("/v1/jobs", json={**body, "seed": 4}, headers={"Idempotency-Key": "order-17"})
        assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency_conflict"
        other = c.post("/v1/jobs", json=body, headers={"Idempotency-Key": "order-18"})
        assert other.status_code == 202 and other.json()["id"] != first.json()["id"]

        put = c.put("/v1/jobs/my-job_1", json=body)
        assert put.status_code == 201 and put.json()["id"] == "my-job_1"
        wait_state(c, "my-job_1", ("done",))
        again = c.put("/v1/jobs/my-job_1", json=body)
        assert again.status_code == 200 and again.json()["state"] == "done"  # the finished job, not a new one
        assert c.get("/v1/jobs/my-job_1/audio").status_code == 200
        assert c.put("/v1/jobs/my-job_1", json={**body, "prompt": "other"}).status_code == 409
        assert c.put("/v1/jobs/bad.id", json=body).status_code in (400, 404)
        for job in (first.json(), other.json()):
            wait_state(c, job["id"], ("done",))
        assert len(ToneBackend.batches) - started <= 3  # three jobs, never a fourth generation
        assert sum(ToneBackend.batches[started:]) == 3


def test_a_job_no_worker_starts_in_time_expires_without_running(make_server: Any) -> None:
    with make_server({"max_active_per_client": 10}) as srv, srv.client() as c:
        busy = c.post("/v1/jobs", json={"prompt": "busy", "duration": 1, "options": {"delay": LONG}}).json()
        wait_state(c, busy["id"], ("running",))  # the only worker is taken
        late = c.post("/v1/jobs", json={"prompt": "too late for http", "duration": 1, "start_timeout": 1})
        assert late.status_code == 202 and late.json()["state"] == "queued", late.text
        status = wait_state(c, late.json()["id"], ("expired", "done", "failed"))
        assert status["state"] == "expired" and status["error"]["code"] == "expired"
        assert "did not start within its start_timeout of 1 s" in status["error"]["message"]
        audio = c.get(late.json()["links"]["audio"]["wav"])
        assert audio.status_code == 410 and audio.json()["error"]["message"] == status["error"]["message"]
        events = c.get(late.json()["links"]["events"]).text
        assert '"state":"expired"' in events  # the stream ends with the final state
        assert c.delete(f"/v1/jobs/{busy['id']}").status_code == 200
        after = c.post("/v1/jobs", json={"prompt": "after", "duration": 1}).json()
        assert wait_state(c, after["id"], ("done", "failed"))["state"] == "done"  # the worker went past it
        assert "too late for http" not in ToneBackend.started


def test_a_job_that_starts_in_time_is_unaffected(make_server: Any) -> None:
    with make_server() as srv, srv.client() as c:
        timed = c.post("/v1/jobs", json={"prompt": "in time", "duration": 1, "start_timeout": 60}).json()
        form = c.post("/v1/jobs/upload", data={"prompt": "form in time", "duration": "1", "start_timeout": "60"})
        assert form.status_code == 202, form.text
        for job in (timed, form.json()):
            status = wait_state(c, job["id"], ("done", "failed", "expired"))
            assert status["state"] == "done" and status["error"] is None
        refused = c.post("/v1/jobs/upload", data={"prompt": "x", "start_timeout": "-1"})
        assert refused.status_code == 422 and "start_timeout" in refused.json()["error"]["message"]

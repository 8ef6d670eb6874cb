"""API replicas over a real broker: `tag serve` processes on the rabbitmq transport share one job store and one
durable reply queue, so a job outlives the replica that created it (kill -9, every replica down, broker restart).

The worker is the test kit's `tone` backend in a thread of the test process (its batches are counted, so a job
generated twice would show). The store is a SQLite file shared by the processes, or the session's private
PostgreSQL where its binaries are installed.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

import tag_testkit.tone
from tag_testkit.broker import (ThreadWorker, broker_env, delete_queues, queue_depth, rabbitmq_node,  # noqa: F401
                                stop_process)
from tag_testkit.postgres import PostgresNode
from tag_testkit.tone import ToneBackend
from tag_rabbitmq.devbroker import BrokerNode
from tagcore import plugins

if not plugins.get_plugin_manager().has_plugin("tag_testkit.tone"):
    plugins.register_plugin(tag_testkit.tone, name="tag_testkit.tone")

WAIT = 60.0
"""Upper bound for anything to happen (a slow CI machine); the tests take a few seconds each."""


class Api:
    """One `tag serve` replica as a child process, on its own port, logging to a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        tag = Path(sys.executable).with_name("tag")
        child_env = {**os.environ, **env, "TAG_PLUGINS": "rabbitmq,http", "TAG_PLUGIN_MODULES": "tag_testkit.tone"}
        with log.open("ab") as out:
            self.process = subprocess.Popen([str(tag), "serve", "--transport", "rabbitmq", "--port", str(self.port)],
                                            env=child_env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        until(self.healthy, f"{self.url} answering", self)

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()


def until(predicate: Callable[[], bool], what: str, api: Api | None = None) -> None:
    end = time.monotonic() + WAIT
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    log = api.log.read_text()[-3000:] if api is not None else ""
    raise AssertionError(f"{what} did not happen in {WAIT:g} s\n{log}")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    node: PostgresNode = request.getfixturevalue("postgres_node")  # skips with a reason when absent
    return node.new_database()


@pytest.fixture
def env(rabbitmq_node: BrokerNode, store_url: str) -> Iterator[dict[str, str]]:
    """Broker queues private to this test, the shared store, no rate limit, one reply queue name."""
    values = broker_env(rabbitmq_node)
    values.update({"TAG_HTTP_STORE": store_url, "TAG_HTTP_RATE_LIMIT": "0", "TAG_HTTP_REPLY_QUEUE": "api",
                   "TAG_HTTP_MAX_ACTIVE_PER_CLIENT": "10"})
    yield values
    if rabbitmq_node.accepting():
        delete_queues(rabbitmq_node, values, names=(reply_queue(values),))


@pytest.fixture
def worker(env: dict[str, str]) -> Iterator[ThreadWorker]:
    started = ThreadWorker(env, ["tone"], worker_id="w")
    yield started
    started.stop()


@pytest.fixture
def apis(tmp_path: Path) -> Iterator[list[Api]]:
    """Replicas a test starts; each is stopped afterwards."""
    started: list[Api] = []
    yield started
    for api in started:
        stop_process(api.process)


def job(delay: float = 0.0, prompt: str = "a hum") -> dict[str, object]:
    return {"prompt": prompt, "backend": "tone", "duration": 1.0, "options": {"delay": delay}}


def finished(api: Api, job_id: str) -> dict[str, object]:
    """The job's status once it finished (asserting every poll on the way finds it)."""
    states: list[dict[str, object]] = []

    def done() -> bool:
        reply = httpx.get(f"{api.url}/v1/jobs/{job_id}", timeout=10)
        assert reply.status_code == 200, reply.text  # never a 404: the job outlives its replica
        states.append(reply.json())
        return states[-1]["state"] not in ("queued", "running")

    until(done, f"job {job_id} finishing", api)
    return states[-1]


def reply_queue(env: dict[str, str]) -> str:
    return f"{env['TAG_RABBITMQ_RESPONSE_QUEUE']}.api"


def test_a_job_created_on_one_replica_is_read_streamed_and_downloaded_from_another(env, worker, apis, tmp_path):
    apis += [Api(env, tmp_path / "a.log"), Api(env, tmp_path / "b.log")]
    a, b = apis
    created = a.client().post("/v1/jobs", json=job(delay=0.5))
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    assert b.client().get(f"/v1/jobs/{job_id}").status_code == 200
    states = []
    with b.client().stream("GET", f"/v1/jobs/{job_id}/events") as events:
        for line in events.iter_lines():
            if line.startswith("data: "):
                states.append(json.loads(line[6:])["state"])
                if states[-1] not in ("queued", "running"):
                    break
    assert states[-1] == "done" and states[0] in ("queued", "running"), states
    audio = b.client().get(f"/v1/jobs/{job_id}/audio")
    assert audio.status_code == 200 and audio.content[:4] == b"RIFF"
    assert a.client().get(f"/v1/jobs/{job_id}/audio").content == audio.content


def test_kill_9_mid_run_then_restart_answers_every_job_once(env, worker, apis, tmp_path):
    apis.append(Api(env, tmp_path / "a.log"))
    before = len(ToneBackend.batches)
    with apis[0].client() as http:
        replies = [http.post("/v1/jobs", json=job(delay=0.2, prompt=f"hum {n}"), headers={"Idempotency-Key": f"k{n}"})
                   for n in range(5)]
    assert [r.status_code for r in replies] == [202] * 5
    ids = [r.json()["id"] for r in replies]
    apis[0].kill()  # answers arrive while no replica runs; the queue keeps them
    apis.append(Api(env, tmp_path / "a2.log"))
    assert [finished(apis[1], job_id)["state"] for job_id in ids] == ["done"] * 5
    for job_id in ids:
        assert apis[1].client().get(f"/v1/jobs/{job_id}/audio").status_code == 200
    assert sum(ToneBackend.batches[before:]) == 5  # each generated once
    retry = apis[1].client().post("/v1/jobs", json=job(delay=0.2, prompt="hum 0"), headers={"Idempotency-Key": "k0"})
    assert retry.status_code == 200 and retry.json()["id"] == ids[0] and retry.json()["state"] == "done"


def test_an_answer_that_arrives_while_every_replica_is_down_is_delivered_later(rabbitmq_node, env, worker, apis,
                                                                                tmp_path):
    apis.append(Api(env, tmp_path / "a.log"))
    job_id = apis[0].client().post("/v1/jobs", json=job(delay=0.3)).json()["id"]
    apis[0].kill()
    until(lambda: queue_depth(rabbitmq_node, reply_queue(env))[0] >= 1, "the answer waiting in the reply queue")
    apis.append(Api(env, tmp_path / "a2.log"))
    assert finished(apis[1], job_id)["state"] == "done"
    until(lambda: queue_depth(rabbitmq_node, reply_queue(env))[0] == 0, "the answer acknowledged")


def test_the_broker_restarted_while_the_api_is_down_loses_no_answer(rabbitmq_node, env, worker, apis, tmp_path):
    apis.append(Api(env, tmp_path / "a.log"))
    job_id = apis[0].client().post("/v1/jobs", json=job(delay=0.3)).json()["id"]
    apis[0].kill()
    until(lambda: queue_depth(rabbitmq_node, reply_queue(env))[0] >= 1, "the answer waiting in the reply queue")
    rabbitmq_node.stop()
    rabbitmq_node.start()
    apis.append(Api(env, tmp_path / "a2.log"))
    assert finished(apis[1], job_id)["state"] == "done"
    assert apis[1].client().get(f"/v1/jobs/{job_id}/audio").status_code == 200


def test_sigterm_stops_taking_answers_before_the_store_closes(env, worker, apis, tmp_path):
    apis.append(Api(env, tmp_path / "a.log"))
    job_id = apis[0].client().post("/v1/jobs", json=job(delay=8.0)).json()["id"]  # longer than uvicorn's 5 s grace
    with streaming(apis[0], job_id):  # an open event stream, which the shutdown ends instead of waiting it out
        apis[0].process.send_signal(signal.SIGTERM)  # the answer comes during or after the shutdown
        apis[0].process.wait(WAIT)
    log = (tmp_path / "a.log").read_text()
    assert "graceful shutdown exceeded" not in log and "Exception in ASGI application" not in log, log[-3000:]
    apis.append(Api(env, tmp_path / "a2.log"))
    assert finished(apis[1], job_id)["state"] == "done"


@contextlib.contextmanager
def streaming(api: Api, job_id: str) -> Iterator[None]:
    """A client following the job's event stream on `api` from its first event until the block ends (then it
    hangs up)."""
    with api.client() as http, http.stream("GET", f"/v1/jobs/{job_id}/events") as events:
        lines = events.iter_lines()  # kept open: closing the line iterator early would close the connection
        assert any(line.startswith("data: ") for line in lines)
        yield


def test_a_job_streamed_on_two_replicas_is_cancelled_once_the_last_stream_hangs_up(env, worker, apis, tmp_path):
    env = {**env, "TAG_HTTP_DISCONNECT_GRACE": "1"}
    apis += [Api(env, tmp_path / "a.log"), Api(env, tmp_path / "b.log")]
    a, b = apis
    job_id = a.client().post("/v1/jobs", json=job(delay=WAIT, prompt="watched on two replicas")).json()["id"]
    until(lambda: httpx.get(f"{a.url}/v1/jobs/{job_id}").json()["state"] == "running", "the job running", a)
    with streaming(b, job_id):
        with streaming(a, job_id):
            pass  # A's client hangs up while B's waits
        time.sleep(3)  # past A's grace
        assert httpx.get(f"{a.url}/v1/jobs/{job_id}").json()["state"] == "running"
    assert finished(a, job_id)["state"] == "cancelled"  # by B, the replica whose client hung up last
    after = a.client().post("/v1/jobs", json=job(prompt="after the cancel")).json()["id"]
    assert finished(b, after)["state"] == "done"  # the worker was told: it stopped the long job
    assert "watched on two replicas" not in ToneBackend.generated

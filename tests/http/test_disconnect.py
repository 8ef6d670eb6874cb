"""A client waiting on a job (an event stream, a speech call) that hangs up cancels it when nobody else waits on
it; polling never counts as waiting. Real HTTP connections to a running server, closed as a client would."""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tag_testkit.tone import VoiceToneBackend
from tagcore import hookimpl, plugins

from .test_cancel_and_idempotency import LONG, wait_state

GRACE = 3.0
"""The servers' disconnect_grace; waits "past the grace" below are GRACE + 1 s."""
LONG_JOB = {"prompt": "a long drone", "duration": 1, "options": {"delay": LONG}}


@dataclasses.dataclass
class Watch:
    hung_up: float = float("nan")
    """time.time() just before the connection was closed: the server cannot have seen the hang-up earlier."""


@contextlib.contextmanager
def watching(server: Any, job: dict[str, Any]) -> Iterator[Watch]:
    """A client following the job's event stream on a connection of its own, from its first status event (the
    server counts it as waiting by then) until the block ends: then it hangs up."""
    watch = Watch()
    with server.client() as watcher, watcher.stream("GET", job["links"]["events"]) as stream:
        lines = stream.iter_lines()  # kept until the end: a line iterator closed early closes the connection
        head = list(itertools.takewhile(lambda line: not line.startswith("data: "), lines))
        retry = int(head[0].removeprefix("retry: "))
        assert 0 < retry < GRACE * 1000  # a browser's EventSource comes back well within the grace
        yield watch
        watch.hung_up = time.time()


def follow_then_hang_up(server: Any, job: dict[str, Any]) -> float:
    """Follow the job's event stream up to its first event, then hang up; when it hung up."""
    with watching(server, job) as watch:
        pass
    return watch.hung_up


def running_job(server: Any, client: httpx.Client) -> dict[str, Any]:
    job: dict[str, Any] = client.post("/v1/jobs", json=LONG_JOB).json()
    wait_state(client, job["id"], ("running",))
    return job


def assert_cancelled_after_the_grace(client: httpx.Client, job: dict[str, Any], hung_up: float) -> None:
    status = wait_state(client, job["id"], ("cancelled", "done", "failed"))
    assert status["state"] == "cancelled"
    assert status["finished_at"] - hung_up >= GRACE  # never before the grace: the client could have come back


@pytest.fixture()
def server(make_server: Any) -> Iterator[Any]:
    with make_server({"disconnect_grace": GRACE, "max_active_per_client": 10}) as srv:
        yield srv


def test_an_event_stream_that_hangs_up_cancels_its_job_after_the_grace(server: Any) -> None:
    with server.client() as c:
        job = running_job(server, c)
        hung_up = follow_then_hang_up(server, job)
        assert_cancelled_after_the_grace(c, job, hung_up)


def test_a_job_stays_while_another_stream_waits_or_one_reconnects_in_time(server: Any) -> None:
    with server.client() as c:
        job = running_job(server, c)
        with watching(server, job):
            follow_then_hang_up(server, job)
            time.sleep(GRACE + 1)
            assert c.get(job["links"]["status"]).json()["state"] == "running"
        follow_then_hang_up(server, job)  # the last stream left, then a client came back at once ...
        with watching(server, job) as watch:
            time.sleep(GRACE + 1)
            assert c.get(job["links"]["status"]).json()["state"] == "running"  # ... within the grace
        assert_cancelled_after_the_grace(c, job, watch.hung_up)


def test_a_job_that_is_only_polled_is_never_cancelled(server: Any) -> None:
    with server.client() as c:
        job = running_job(server, c)
        for _ in range(3):
            with server.client() as poller:  # a connection of its own, closed after each poll
                assert poller.get(job["links"]["status"]).json()["state"] == "running"
        time.sleep(GRACE + 1)
        assert c.get(job["links"]["status"]).json()["state"] == "running"
        assert c.delete(job["links"]["status"]).status_code == 200
        finished = c.post("/v1/jobs", json={"prompt": "streamed to the end", "duration": 1}).json()
        with c.stream("GET", finished["links"]["events"]) as stream:
            states = [line for line in stream.iter_lines() if line.startswith("data: ")]
        assert '"state":"done"' in states[-1]  # a stream that ends with its job cancels nothing


class SlowVoice(VoiceToneBackend):
    """A speech-like backend that takes LONG seconds unless cancelled (speech calls cannot pass a delay)."""

    name = "slow_voice"
    options = tuple(dataclasses.replace(option, default=LONG) if option.name == "delay" else option
                    for option in VoiceToneBackend.options)


class _Plugin:
    @hookimpl
    def register_backends(self, register) -> None:  # type: ignore[no-untyped-def]
        register(SlowVoice)


@pytest.fixture()
def speech_server(make_server: Any) -> Iterator[Any]:
    plugins.register_plugin(_Plugin(), name="http-test-slow-voice")
    try:
        with make_server({"disconnect_grace": GRACE, "backends": "slow_voice"}, serve=("slow_voice",)) as srv:
            yield srv
    finally:
        plugins.unregister_plugin("http-test-slow-voice")


def speak_then_hang_up(server: Any, words: str) -> tuple[threading.Thread, list[BaseException]]:
    """A speech call, in a thread, whose client gives up (closes the connection) after a while; the thread and
    what the call raised."""
    raised: list[BaseException] = []

    def call() -> None:
        try:
            with server.client() as caller:
                caller.post("/v1/audio/speech", json={"model": "slow_voice", "input": words, "voice": "alloy",
                                                      "response_format": "wav"}, timeout=GRACE + 2)
        except BaseException as exc:  # checked by the test: a thread's exception would vanish
            raised.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    return thread, raised


def running_speech(server: Any, client: httpx.Client) -> dict[str, Any]:
    """The status of the one job of this server once it runs (speech calls tell their job id only at the end)."""
    path = server.frontend.http.store_url().removeprefix("sqlite:///")
    end = time.monotonic() + 30
    while time.monotonic() < end:
        with sqlite3.connect(path) as db:
            rows = db.execute("SELECT id FROM jobs WHERE state = 'running'").fetchall()
        if rows:
            return client.get(f"/v1/jobs/{rows[0][0]}").json()  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError("the speech job never started")


def test_a_speech_caller_that_hangs_up_cancels_its_job_at_once(speech_server: Any) -> None:
    with speech_server.client() as c:
        call, raised = speak_then_hang_up(speech_server, "nobody will hear this")
        job = running_speech(speech_server, c)
        call.join(30)
        assert len(raised) == 1 and isinstance(raised[0], httpx.ReadTimeout), raised
        status = wait_state(c, job["id"], ("cancelled", "done", "failed"))
        assert status["state"] == "cancelled"


def test_a_speech_job_another_client_waits_on_stays_until_that_one_hangs_up(speech_server: Any) -> None:
    with speech_server.client() as c:
        call, raised = speak_then_hang_up(speech_server, "someone else is listening")
        job = running_speech(speech_server, c)
        with watching(speech_server, job) as watch:
            call.join(30)
            assert len(raised) == 1 and isinstance(raised[0], httpx.ReadTimeout), raised
            time.sleep(GRACE + 1)
            assert c.get(job["links"]["status"]).json()["state"] == "running"
        assert_cancelled_after_the_grace(c, job, watch.hung_up)

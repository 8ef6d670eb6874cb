"""The durable job store's contract, run against SQLite and a private PostgreSQL cluster alike.

"Restart" is a new store object on the same file or database; "two replicas" are two store objects on one
database, each folding the events it receives.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tag_http.dialects import dialect_for
from tag_http.jobs import JobStore
from tag_http.migrations import LATEST, MIGRATIONS
from tag_http.records import LimitReached, Limits, StoreError
from tag_http.sqlrecords import SqlRecords
from tag_testkit.postgres import PostgresNode
from tagcore import Audio
from tagcore.errors import ConfigError
from tagcore.messages import ProgressEvent, SoundRequest, SoundResponse

TTL = 100.0


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/jobs.sqlite"
    node: PostgresNode = request.getfixturevalue("postgres_node")
    return node.new_database()


@pytest.fixture()
def open_store(store_url: str) -> Iterator[Callable[[], JobStore]]:
    """`open_store()` opens one more store object on the test's database; all are closed afterwards."""
    opened: list[JobStore] = []

    def make() -> JobStore:
        opened.append(JobStore(TTL, url=store_url, poll_interval=0.02))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


def request(prompt: str = "rain on a tin roof") -> SoundRequest:
    return SoundRequest(prompt=prompt, duration=1.0, backend="tone", seed=5, deadline=time.time() + 10)


def answer(job: SoundRequest, seed: int = 9) -> SoundResponse:
    tone = np.sin(np.linspace(0, 200, 16000, dtype=np.float32))[None, :] * 0.5
    return SoundResponse(job.request_id, ok=True, audio=Audio(tone, 16000), seed=seed, backend="tone",
                         model_id="tone-1", timings={"generate": 0.25}, metadata={"steps": np.int64(3)})


def test_a_job_and_its_result_survive_a_restart(open_store: Callable[[], JobStore]) -> None:
    first = open_store()
    job = request()
    record, created = first.add(job, "client-a", fingerprint="digest-1")
    assert created and record.state == "queued"
    first.on_event(ProgressEvent(job.request_id, "generating", fraction=0.5))
    first.on_event(answer(job))
    wav = first.result_bytes(record, "wav")
    assert record.state == "done" and wav

    again = open_store()  # a restarted server on the same store
    stored = again.get(job.request_id)
    assert stored is not None and stored is not record
    assert (stored.state, stored.seed, stored.model_id, stored.client) == ("done", 9, "tone-1", "client-a")
    assert stored.timings == {"generate": 0.25} and stored.metadata == {"steps": 3}
    assert stored.started_at is not None and stored.audio_seconds == pytest.approx(1.0)
    assert stored.version == record.version == 2
    assert again.result_bytes(stored, "wav") == wav
    assert len(again.result_bytes(stored, "flac") or b"") > 0
    # The retry of an Idempotency-Key after the restart finds the same job and its fingerprint.
    retried, created = again.add(job, "client-a", fingerprint="other")
    assert not created and retried is stored and retried.fingerprint == "digest-1"


def test_results_expire_then_tombstones_go(open_store: Callable[[], JobStore]) -> None:
    store = open_store()
    job, lost = request(), request("never answered")
    record, _ = store.add(job, "c")
    stuck, _ = store.add(lost, "c")
    store.on_event(answer(job))
    assert store.result_bytes(record, "ogg")
    cached = list(record.files.values())
    assert len(cached) == 2 and all(path.exists() for path in cached)
    assert record.expires_at is not None
    store.sweep(now=record.expires_at + 1)  # also past the unanswered job's deadline + grace
    assert record.state == "expired" and not any(path.exists() for path in cached)
    assert store.records.result(job.request_id) is None and store.result_bytes(record, "wav") is None
    assert stuck.state == "failed" and stuck.error_code == "timed_out"
    assert store.unfinished() == 0 and store.count() == 2
    store.sweep(now=record.expires_at + TTL + 1)
    assert store.get(job.request_id) is None and store.count() == 1  # the failed job's own TTL runs on


def test_two_replicas_see_each_others_changes(open_store: Callable[[], JobStore]) -> None:
    a, b = open_store(), open_store()
    job = request()
    on_a, _ = a.add(job, "c")
    on_b = b.get(job.request_id)
    assert on_b is not None and on_b.state == "queued"
    assert b.add(job, "c")[1] is False  # B knows the id A created: a retry there submits nothing

    async def follow() -> list[str]:
        """A's event stream while B receives the worker's events: A must see every change B commits."""
        a.start(asyncio.get_running_loop())
        seen, states = on_a.version, []
        for event in (ProgressEvent(job.request_id, "generating", fraction=0.3), answer(job)):
            await asyncio.to_thread(b.on_event, event)
            await a.wait_for_change(on_a, seen, timeout=60)
            assert on_a.version != seen, "A was not woken by B's change"
            seen = on_a.version
            states.append(on_a.state)
        return states

    assert asyncio.run(follow()) == ["running", "done"]
    assert a.result_bytes(on_a, "wav") == b.result_bytes(b.get(job.request_id) or on_b, "wav")
    assert a.cancel(on_a) is False  # finished on B: A cannot cancel it any more


def test_concurrent_writers_on_two_replicas_lose_no_change(open_store: Callable[[], JobStore]) -> None:
    replicas = (open_store(), open_store())
    job = request()
    replicas[0].add(job, "c")
    per_thread, threads = 15, []
    failures: list[BaseException] = []

    def write(store: JobStore, offset: int) -> None:
        try:
            for step in range(per_thread):
                store.on_event(ProgressEvent(job.request_id, "generating", fraction=(offset + step) / 100))
        except BaseException as exc:  # reported below: a thread's assertion would otherwise vanish
            failures.append(exc)

    for index in range(4):
        threads.append(threading.Thread(target=write, args=(replicas[index % 2], index * per_thread)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures
    stored = replicas[1].get(job.request_id)
    assert stored is not None and stored.version == 4 * per_thread and stored.state == "running"


def test_unfinished_counts_and_live_positions(open_store: Callable[[], JobStore]) -> None:
    a, b = open_store(), open_store()
    first, second = request("one"), request("two")
    a.add(first, "c1")
    record, _ = b.add(second, "c2")  # B sees A's queued job ahead of its own
    b.on_event(ProgressEvent(second.request_id, "queued", position=2))
    assert b.position(record) == 2
    a.on_event(ProgressEvent(first.request_id, "generating", fraction=0.1))
    assert b.position(record) == 1
    assert (a.unfinished(), a.unfinished("c1"), b.unfinished("c2"), b.unfinished("nobody")) == (2, 1, 1, 0)
    assert a.cancel(a.get(second.request_id) or record) and b.get(second.request_id) is record
    assert record.state == "cancelled" and b.unfinished() == 1


def test_job_limits_hold_for_submits_racing_on_two_replicas(open_store: Callable[[], JobStore]) -> None:
    """The counts and the insert share a transaction that excludes other submits: never a sixth job."""
    replicas = (open_store(), open_store())
    start, outcomes = threading.Barrier(12), list[str]()

    def submit(index: int) -> None:
        start.wait(30)
        try:
            replicas[index % 2].add(request(f"job {index}"), f"c{index % 3}", limits=Limits(total=5, per_client=2))
            outcomes.append(f"c{index % 3}")
        except LimitReached as exc:
            outcomes.append(exc.which)

    threads = [threading.Thread(target=submit, args=(index,)) for index in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    created = [outcome for outcome in outcomes if outcome.startswith("c")]
    assert len(outcomes) == 12 and len(created) == 5 and replicas[0].unfinished() == 5
    assert all(created.count(client) <= 2 for client in ("c0", "c1", "c2"))
    assert set(outcomes) - set(created) <= {"total", "per_client"}


def test_a_store_written_before_this_release_is_migrated_and_read(store_url: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows and record documents of schema 1 (with fields this release dropped) stay readable and writable."""
    import tag_http.migrations as migrations

    with monkeypatch.context() as old_release:
        old_release.setattr(migrations, "MIGRATIONS", MIGRATIONS[:1])
        old_release.setattr(migrations, "LATEST", 1)
        old = SqlRecords(store_url)
    job_id = "ab" * 16
    document = {"id": job_id, "client": "c", "prompt": "old", "duration": 1.0, "backend": "tone", "seed": 1,
                "candidates": 1, "deadline": time.time() + 60, "created_at": time.time(), "state": "queued",
                "reported_position": 3, "ahead": ["cd" * 16], "version": 1, "fingerprint": "f"}
    with old.pool.connection() as conn:
        conn.execute(old.dialect.sql("INSERT INTO jobs (id, client, state, backend, deadline, expires_at, version,"
                                     " record) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
                     (job_id, "c", "queued", "tone", document["deadline"], None, 1, json.dumps(document)))
    old.close()
    store = JobStore(TTL, url=store_url)
    try:
        record = store.get(job_id)
        assert record is not None and record.prompt == "old" and store.position(record) == 3
        store.on_event(ProgressEvent(job_id, "generating", fraction=0.5))
        assert record.state == "running" and record.version == 2 and store.unfinished("c") == 1
    finally:
        store.close()


def test_waiters_count_until_they_leave_and_go_with_their_job(open_store: Callable[[], JobStore]) -> None:
    a, b = open_store(), open_store()
    job, other = request("watched"), request("discarded")
    a.add(job, "c")
    b.add(other, "c")
    a.records.add_waiter(job.request_id, "s1")
    b.records.add_waiter(job.request_id, "s2")  # the same job followed on another replica
    assert a.records.others_waiting(job.request_id, "s1", left_since=0.0)
    b.records.leave_waiter(job.request_id, "s2", at=100.0)
    assert a.records.others_waiting(job.request_id, "s1", left_since=99.0)  # left within the grace: may be back
    assert not a.records.others_waiting(job.request_id, "s1", left_since=101.0)
    assert b.records.others_waiting(job.request_id, "s2", left_since=101.0)  # s1 still waits
    a.records.drop_waiter(job.request_id, "s1")
    assert not b.records.others_waiting(job.request_id, "s3", left_since=101.0)
    a.records.add_waiter(other.request_id, "s4")
    b.discard(other.request_id)
    a.records.add_waiter(job.request_id, "s5")  # a replica killed while its stream was open
    assert a.cancel(a.get(job.request_id) or request())
    a.sweep(now=time.time() + TTL + 1)  # the TTL passes ...
    a.sweep(now=time.time() + 2 * TTL + 2)  # ... and the tombstone's
    with a.records.pool.connection() as conn:  # type: ignore[attr-defined]
        assert conn.execute("SELECT count(*) FROM waiters").fetchone()[0] == 0


def test_an_answer_is_committed_whole_or_not_at_all(open_store: Callable[[], JobStore]) -> None:
    store = open_store()
    job = request()
    record, _ = store.add(job, "c")
    store.on_event(ProgressEvent(job.request_id, "generating", fraction=0.5))
    with store.records.pool.connection() as conn:  # type: ignore[attr-defined]
        conn.execute("DROP TABLE results")  # the audio cannot be written any more
    with pytest.raises(StoreError):
        store.on_event(answer(job))  # the transport must not acknowledge this answer
    again = store.get(job.request_id)
    assert again is not None and again.state == "running" and again.version == 1


def test_migrations_are_applied_once(store_url: str) -> None:
    first = SqlRecords(store_url)
    assert first.applied == [version for version, _, _ in MIGRATIONS]
    second = SqlRecords(store_url)  # a restart, or a second replica starting
    assert second.applied == []
    with second.pool.connection() as conn:
        rows = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        assert [row[0] for row in rows] == [version for version, _, _ in MIGRATIONS]
        conn.execute(second.dialect.sql("INSERT INTO schema_version VALUES (?, ?, ?)"),
                     (LATEST + 1, "from a newer TAG", 0.0))
    for records in (first, second):
        records.close()
    with pytest.raises(StoreError, match="newer than this TAG"):
        SqlRecords(store_url)


def test_replicas_starting_at_once_migrate_once(store_url: str) -> None:
    opened: list[SqlRecords] = []
    failures: list[BaseException] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        try:
            start.wait(30)
            opened.append(SqlRecords(store_url))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures and len(opened) == 4
    assert sorted(len(records.applied) for records in opened) == [0, 0, 0, len(MIGRATIONS)]
    for records in opened:
        records.close()


@pytest.mark.parametrize("url", ["sqlite://relative.db", "mysql://host/db", "jobs.sqlite", "sqlite:///",
                                 "sqlite:///x.db?synchronous=off", "sqlite:///x.db?journal=delete"])
def test_a_store_url_of_unknown_shape_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="http store"):
        dialect_for(url)


def finished(client: httpx.Client, status_url: str, timeout: float = 30) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while (status := client.get(status_url).json())["state"] in ("queued", "running"):
        assert time.monotonic() < end, f"the job did not finish: {status}"
        time.sleep(0.05)
    return status  # type: ignore[no-any-return]


def test_an_idempotency_key_repeated_after_a_server_restart_answers_with_the_same_job(
        make_server: Any, store_url: str) -> None:
    body, key = {"prompt": "kept across restarts", "duration": 1, "seed": 4}, {"Idempotency-Key": "order-42"}
    with make_server({"store": store_url}) as srv, srv.client() as c:
        job = c.post("/v1/jobs", json=body, headers=key)
        assert job.status_code == 202
        assert finished(c, job.json()["links"]["status"])["state"] == "done"
        audio = c.get(job.json()["links"]["audio"]["wav"]).content
    with make_server({"store": store_url}) as srv, srv.client() as c:  # a new process: nothing in memory
        status = c.get(job.json()["links"]["status"]).json()
        assert status["state"] == "done" and status["seed"] == 4
        retry = c.post("/v1/jobs", json=body, headers=key)
        assert retry.status_code == 200 and retry.headers["Idempotent-Replayed"] == "true"
        assert retry.json()["id"] == job.json()["id"] and retry.json()["state"] == "done"
        assert c.get(job.json()["links"]["audio"]["wav"]).content == audio
        conflict = c.post("/v1/jobs", json={**body, "seed": 5}, headers=key)
        assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency_conflict"

"""The HTTP frontend's building blocks without a server: settings, rate limiter, job store."""
from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from tag_http.frontend import HttpFrontend
from tag_http.idempotency import fingerprint
from tag_http.jobs import START_GRACE, TIMEOUT_GRACE, JobStore
from tag_http.limits import RateLimiter
from tag_http.schemas import GenerateRequest
from tag_http.settings import HttpSettings
from tagcore import Audio, plugins
from tagcore.config import load_config
from tagcore.errors import ConfigError, StartExpired
from tagcore.messages import ProgressEvent, SoundRequest, SoundResponse


def test_settings_from_config_file_and_environment(tmp_path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[http]\nport = 9000\nbackends = ["tone"]\nresult_ttl = 60\n')
    config = load_config(path, environ={"TAG_HTTP_RATE_LIMIT": "5", "TAG_HTTP_BACKENDS": "tone,sine"})
    settings = HttpSettings.from_mapping({"host": "0.0.0.0", "port": None, **config.section("http")})
    assert (settings.host, settings.port, settings.rate_limit, settings.result_ttl) == ("0.0.0.0", 9000, 5.0, 60.0)
    assert settings.backends == ("tone", "sine")


@pytest.mark.parametrize(("values", "words"), [
    ({"prot": 1}, "unknown http setting 'prot'"),
    ({"port": "eighty"}, "port: 'eighty' is not a valid int"),
    ({"port": 70000}, "out of range"),
    ({"result_ttl": 0}, "result_ttl"),
    ({"disconnect_grace": -1}, "disconnect_grace must be 0 to 3600"),
    ({"disconnect_grace": "soon"}, "disconnect_grace"),
])
def test_bad_settings_name_the_setting(values: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        HttpSettings.from_mapping(values)


def test_frontend_is_registered_as_http() -> None:
    assert plugins.frontends().get("http") is HttpFrontend


def test_rate_limiter_bucket() -> None:
    limiter = RateLimiter(per_minute=60, burst=2)
    assert limiter.take("a", now=0) == 0 and limiter.take("a", now=0) == 0
    assert limiter.take("a", now=0) == pytest.approx(1.0)  # one token per second
    assert limiter.take("b", now=0) == 0  # clients are separate
    assert limiter.take("a", now=1.0) == 0
    assert RateLimiter.retry_after_header(0.2) == "1"
    assert RateLimiter(0, 1).take("a") == 0  # 0 turns limiting off


def request(prompt: str = "x") -> SoundRequest:
    return SoundRequest(prompt=prompt, duration=1.0, backend="tone", deadline=time.time() + 10)


def test_store_follows_events_and_expires_results() -> None:
    store = JobStore(result_ttl=100)
    first, second = request(), request()
    store.add(first, "c1")
    record, _ = store.add(second, "c1")
    store.on_event(ProgressEvent(first.request_id, "queued", position=1))
    store.on_event(ProgressEvent(second.request_id, "queued", position=2))
    assert store.position(record) == 2
    store.on_event(ProgressEvent(first.request_id, "generating", fraction=0.5))
    assert store.position(record) == 1  # our own job ahead left the queue
    store.on_event(ProgressEvent(second.request_id, "generating", fraction=0.2))
    store.on_event(ProgressEvent(second.request_id, "queued", position=5))  # late queued event is ignored
    assert record.state == "running" and store.position(record) is None
    audio = Audio(np.zeros((1, 16000), np.float32), 16000)
    store.on_event(SoundResponse(second.request_id, ok=True, audio=audio, seed=9, backend="tone"))
    assert record.state == "done" and record.seed == 9 and store.unfinished("c1") == 1
    assert len(store.result_bytes(record, "flac")) > 0
    files = list(record.files.values())
    store.sweep(now=record.expires_at + 1)
    assert record.state == "expired" and not any(p.exists() for p in files)
    assert store.result_bytes(record, "wav") is None
    store.sweep(now=record.expires_at + 101)
    assert store.get(second.request_id) is None  # the tombstone is dropped after another TTL
    store.close()
    assert not store.dir.exists()


def test_store_gives_up_on_unanswered_jobs_and_keeps_orphan_answers() -> None:
    store = JobStore(result_ttl=100)
    lost = request()
    record, _ = store.add(lost, "c1")
    store.sweep(now=lost.deadline + TIMEOUT_GRACE + 1)
    assert record.state == "failed" and record.error_code == "timed_out"
    orphan = "ab" * 16  # answered after a server restart: whoever still polls this id gets the result
    store.on_event(SoundResponse(orphan, ok=True, audio=Audio(np.zeros((1, 160), np.float32), 16000), seed=1))
    assert store.get(orphan).state == "done"
    store.on_event(SoundResponse("../../x", ok=False, error_code="e", error_message="m"))
    assert store.get("../../x") is None
    store.close()


def test_jobs_not_started_by_their_start_deadline_expire_and_the_workers_are_told() -> None:
    store = JobStore(result_ttl=100)
    told: list[str] = []
    loop = asyncio.new_event_loop()
    store.start(loop, tell_workers=told.append)
    try:
        now = time.time()
        waiting = SoundRequest(prompt="w", duration=1.0, backend="tone", created_at=now, start_deadline=now + 1000)
        started = SoundRequest(prompt="s", duration=1.0, backend="tone", start_deadline=now + 1000)
        untimed, answered = request(), SoundRequest(prompt="a", duration=1.0, backend="tone")
        records = [store.add(job, "c")[0] for job in (waiting, started, untimed, answered)]
        store.on_event(ProgressEvent(started.request_id, "generating", fraction=0.1))
        assert store.expire_unstarted(now + 1000 + START_GRACE - 1) == []  # a worker may have just started it
        assert store.expire_unstarted(now + 1000 + START_GRACE + 1) == [waiting.request_id]
        assert told == [waiting.request_id] and store.expire_unstarted(now + 2000) == []  # once, only queued ones
        expired = records[0]
        assert (expired.state, expired.error_code) == ("expired", "expired")
        assert expired.expires_at == now + 1001 + START_GRACE  # a tombstone from the start: nothing to keep
        assert "start_timeout of 1000 s" in (expired.error_message or "")
        assert [record.state for record in records[1:]] == ["running", "queued", "queued"]
        store.on_event(SoundResponse.failure(answered, StartExpired.after(30)))  # a worker's own check
        assert records[3].state == "expired" and "of 30 s" in (records[3].error_message or "")
        assert store.unfinished() == 2
        store.sweep(now=now + 1001 + START_GRACE + 100)  # one TTL later: the tombstone goes
        assert store.get(waiting.request_id) is None
    finally:
        store.close()
        loop.close()


def test_a_fingerprint_without_the_fields_added_since_is_unchanged() -> None:
    """An Idempotency-Key retried across the upgrade that added start_timeout still finds its job."""
    body = GenerateRequest(prompt="rain", duration=2.0, seed=3, options={"steps": 5})
    assert fingerprint(body, None) == "7af7838df498211eb86f60c1dff20ca7de0934ed2342dcbb0020e5e9727bab3a"  # eeb1f00
    assert fingerprint(body.model_copy(update={"start_timeout": 5.0}), None) != fingerprint(body, None)


def test_speech_like_backends_default_to_the_longest_clip_as_a_bound() -> None:
    import tag_testkit.tone
    from tag_http.catalog import Catalog
    from tagcore.catalog import BackendCatalog
    from tagcore.config import Config

    class Speechlike(tag_testkit.tone.ToneBackend):
        name = "speechlike"
        variable_length = True

    if not plugins.get_plugin_manager().is_registered(tag_testkit.tone):
        plugins.register_plugin(tag_testkit.tone)
    known = BackendCatalog()
    known.add_installed([tag_testkit.tone.ToneBackend.spec({}), Speechlike.spec({})])
    catalog = Catalog(Config(max_duration=20.0), known, ("tone",), default_duration=5.0)
    assert catalog.duration_for(tag_testkit.tone.ToneBackend.spec({})) == 5.0
    assert catalog.duration_for(Speechlike.spec({})) == 20.0
    assert [b.name for b in catalog.describe().backends] == ["tone"]
    assert catalog.describe().backends[0].variable_length is False


def test_tag_serve_is_registered_by_the_http_plugin() -> None:
    import click

    from tag_http import commands, plugin
    from tagcore.cli import cli

    group = click.Group()
    plugin.register_commands(cli=group)
    assert group.commands == {"serve": commands.serve}
    assert cli.commands.get("serve", commands.serve) is commands.serve  # the core defines no `serve` of its own

"""The REST API over a real server on 127.0.0.1: generation end to end and every error path."""
from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import soundfile as sf

from tag_testkit.tone import StereoToneBackend, tone_frequency
from tagcore import Audio, hookimpl, plugins
from tagcore import audio as audio_io


def wait_done(client: httpx.Client, job: dict, timeout: float = 20) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = client.get(job["links"]["status"]).json()
        if status["state"] in ("done", "failed", "expired"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job['id']} did not finish: {status}")


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


@pytest.fixture()
def client(server: Any) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


# --- the happy path ---------------------------------------------------------------------------------------------
def test_health_needs_no_key(server: Any) -> None:
    with server.client(key=None) as c:
        body = c.get("/v1/health").json()
    assert body["status"] == "ok" and body["transport"] == "inprocess" and body["auth_required"] is True
    assert body["problems"] == [] and body["backends_served"] >= 1


def test_backends_lists_request_options_only(client: httpx.Client) -> None:
    body = client.get("/v1/backends").json()
    assert body["default"] == "tone"
    (tone,) = body["backends"]
    assert tone["name"] == "tone" and tone["aliases"] == ["sine"] and tone["sample_rate"] == 16000
    assert tone["durations"] == {"min": 1.0, "max": 20.0, "native_max": 10.0, "default": 5.0}
    assert tone["capabilities"]["audio_prompt"] is True and tone["capabilities"]["negative_prompt"] is False
    options = {o["name"]: o for o in tone["options"]}
    assert set(options) == {"amplitude", "delay", "fail", "reject"}  # weights and device are worker options
    assert options["amplitude"]["default"] == 0.5 and options["amplitude"]["maximum"] == 1.0


def test_generation_end_to_end_with_events_and_all_formats(client: httpx.Client) -> None:
    response = client.post("/v1/jobs", json={"prompt": "a beep", "duration": 2, "seed": 7,
                                             "options": {"amplitude": 0.25, "delay": 0.8}})
    assert response.status_code == 202, response.text
    job = response.json()
    assert len(job["id"]) == 32 and response.headers["location"] == job["links"]["status"]
    with client.stream("GET", job["links"]["events"]) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith("data: ")]
    assert events[-1]["state"] == "done" and events[-1]["seed"] == 7 and events[-1]["audio_seconds"] == 2.0
    assert events[0]["audio_seconds"] is None
    fractions = [e["progress"] for e in events if e["state"] == "running"]
    assert fractions and fractions == sorted(fractions)
    assert events[-1]["expires_at"] > time.time()

    wav = client.get(job["links"]["audio"]["wav"])
    assert wav.headers["content-type"] == "audio/wav"
    assert wav.headers["content-disposition"] == 'attachment; filename="tag-a-beep-7.wav"'
    clip = audio_io.decode(wav.content)
    assert clip.sample_rate == 16000 and clip.frames == 32000
    spectrum = np.abs(np.fft.rfft(clip.samples[0]))
    assert abs(np.argmax(spectrum) * 16000 / clip.frames - tone_frequency("a beep")) < 1.0
    assert abs(np.abs(clip.samples).max() - 0.25) < 0.01
    flac = client.get(job["links"]["audio"]["flac"])
    assert flac.headers["content-type"] == "audio/flac"
    np.testing.assert_array_equal(audio_io.decode(flac.content).samples, clip.samples)  # lossless from the WAV
    ogg = client.get(job["links"]["audio"]["ogg"])
    assert ogg.headers["content-type"] == "audio/ogg"
    assert sf.info(io.BytesIO(ogg.content)).subtype == "OPUS"


def test_same_seed_same_sound_and_random_seed_is_reported(client: httpx.Client) -> None:
    first, again = (wait_done(client, client.post("/v1/jobs", json={"prompt": "hum", "seed": 42}).json())
                    for _ in range(2))
    assert client.get(first["links"]["audio"]["wav"]).content == client.get(again["links"]["audio"]["wav"]).content
    assert first["duration"] == 5.0  # the server default inside tone's range
    fresh = wait_done(client, client.post("/v1/jobs", json={"prompt": "hum", "backend": "sine"}).json())
    assert isinstance(fresh["seed"], int) and fresh["backend"] == "tone"


def test_bearer_token_is_accepted(server: Any) -> None:
    with server.client(key=None, headers={"Authorization": f"Bearer {server.key}"}) as c:
        assert c.get("/v1/backends").status_code == 200


def test_upload_with_audio_prompt(client: httpx.Client) -> None:
    prompt_clip = audio_io.encode(Audio(np.zeros((1, 8000), np.float32), 16000), "wav")
    response = client.post("/v1/jobs/upload", data={"prompt": "continue this", "duration": "2", "seed": "3",
                                                    "options": '{"amplitude": 0.1}'},
                           files={"audio_prompt": ("start.wav", prompt_clip, "audio/wav")})
    assert response.status_code == 202, response.text
    assert wait_done(client, response.json())["state"] == "done"


def test_failed_generation_is_reported_and_has_no_audio(client: httpx.Client) -> None:
    job = client.post("/v1/jobs", json={"prompt": "x", "duration": 1, "options": {"fail": True}}).json()
    status = wait_done(client, job)
    assert status["state"] == "failed" and status["error"]["code"] == "generation_failed"
    assert "asked to fail" in status["error"]["message"]
    assert error_of(client.get(job["links"]["audio"]["wav"]), 409)["code"] == "generation_failed"


def test_queue_position_and_not_ready(client: httpx.Client) -> None:
    slow = {"prompt": "slow", "duration": 1, "options": {"delay": 1.5}}
    jobs = [client.post("/v1/jobs", json=slow).json() for _ in range(3)]
    # The worker batches equal requests, so submit a different key to queue behind them.
    behind = client.post("/v1/jobs", json={"prompt": "later", "duration": 2}).json()
    status = client.get(behind["links"]["status"]).json()
    assert status["state"] == "queued" and status["position"] >= 1
    assert error_of(client.get(behind["links"]["audio"]["wav"]), 409)["code"] == "not_ready"
    for job in [*jobs, behind]:
        assert wait_done(client, job)["state"] == "done"


# --- validation errors ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "status", "code", "words"), [
    ({"prompt": "   "}, 400, "empty_prompt", "prompt is empty"),
    ({"prompt": "x" * 600}, 400, "invalid_request", "limit is 500"),
    ({"prompt": "x", "duration": 25}, 400, "invalid_request", "1 to 20 s"),
    ({"prompt": "x", "duration": 0.5}, 400, "invalid_request", "out of range"),
    ({"prompt": "x", "duration": -1}, 422, "invalid_request", "duration"),
    ({"prompt": "x", "duration": "long"}, 422, "invalid_request", "duration"),
    ({"prompt": "x", "backend": "nope"}, 400, "unknown_backend", "available: tone"),
    ({"prompt": "x", "options": {"steps": 3}}, 400, "unknown_option", "no option 'steps'"),
    ({"prompt": "x", "options": {"weights": "/etc"}}, 400, "invalid_request", "when the worker starts"),
    ({"prompt": "x", "options": {"amplitude": 5}}, 400, "invalid_request", "above the maximum"),
    ({"prompt": "x", "options": {"amplitude": [1]}}, 422, "invalid_request", "options"),
    ({"prompt": "x", "seed": -1}, 422, "invalid_request", "seed"),
    ({"prompt": "x", "candidates": 9}, 400, "invalid_request", "candidates must be between 1 and 8"),
    ({"prompt": "x", "negative_prompt": "no"}, 400, "invalid_request", "negative prompt"),
    ({"prompt": "x", "durration": 3}, 422, "invalid_request", "durration"),
    ({"prompt": "x", "start_timeout": 0}, 422, "invalid_request", "start_timeout"),
    ({"prompt": "x", "start_timeout": "soon"}, 422, "invalid_request", "start_timeout"),
    ({"prompt": "x", "start_timeout": 601}, 400, "invalid_request", "request timeout of 600 s"),
    ({}, 422, "invalid_request", "prompt"),
])
def test_bad_requests_get_clear_errors(client: httpx.Client, body: dict, status: int, code: str, words: str) -> None:
    error = error_of(client.post("/v1/jobs", json=body), status)
    assert error["code"] == code and words in error["message"], error


def test_non_json_body_and_bad_upload(client: httpx.Client) -> None:
    response = client.post("/v1/jobs", content=b"prompt=x", headers={"Content-Type": "application/json"})
    assert error_of(response, 422)["code"] == "invalid_request"
    bad_audio = client.post("/v1/jobs/upload", data={"prompt": "x", "duration": "2"},
                            files={"audio_prompt": ("a.wav", b"not audio at all", "audio/wav")})
    assert "could not read the audio file" in error_of(bad_audio, 400)["message"]
    bad_options = client.post("/v1/jobs/upload", data={"prompt": "x", "options": "{nope"})
    assert "JSON object" in error_of(bad_options, 422)["message"]
    long_prompt_clip = audio_io.encode(Audio(np.zeros((1, 48000), np.float32), 16000), "wav")
    too_long = client.post("/v1/jobs/upload", data={"prompt": "x", "duration": "2"},
                           files={"audio_prompt": ("a.wav", long_prompt_clip, "audio/wav")})
    assert "must be shorter" in error_of(too_long, 400)["message"]


# --- limits and safety ------------------------------------------------------------------------------------------
def test_oversized_bodies_are_rejected(client: httpx.Client) -> None:
    big = client.post("/v1/jobs", json={"prompt": "x", "negative_prompt": "y" * 70_000})
    assert error_of(big, 413)["code"] == "too_large"
    upload = client.post("/v1/jobs/upload", data={"prompt": "x"},
                         files={"audio_prompt": ("a.wav", b"\0" * 400_000, "audio/wav")})
    assert error_of(upload, 413)["code"] == "too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold while streaming
        yield b'{"prompt": "'
        for _ in range(100):
            yield b"z" * 1024
        yield b'"}'

    streamed = client.post("/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert error_of(streamed, 413)["code"] == "too_large"


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "Basic dGVzdDp0ZXN0"}])
def test_missing_or_wrong_api_key(server: Any, headers: dict) -> None:
    with server.client(key=None, headers=headers) as c:
        for method, path in [("GET", "/v1/backends"), ("POST", "/v1/jobs"), ("GET", "/v1/jobs/" + "a" * 32),
                             ("GET", "/v1/jobs/" + "a" * 32 + "/audio"), ("GET", "/v1/jobs/" + "a" * 32 + "/events")]:
            response = c.request(method, path, json={"prompt": "x"} if method == "POST" else None)
            assert error_of(response, 401)["code"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"


def test_unknown_job_ids(client: httpx.Client) -> None:
    for job_id in ["0" * 32, "A" * 32, "abc", "0" * 33]:
        for suffix in ("", "/audio", "/events"):
            assert error_of(client.get(f"/v1/jobs/{job_id}{suffix}"), 404)["code"] == "unknown_job"
    assert error_of(client.get("/v1/jobs/" + "0" * 32 + "/audio?format=mp3"), 422)["code"] == "invalid_request"


def raw_get(url: str, key: str, path: str) -> tuple[int, bytes]:
    """GET with the path sent byte for byte (HTTP clients normalise dot segments away)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize("path", [
    "/v1/jobs/../../../../etc/passwd/audio",
    "/v1/jobs/..%2F..%2F..%2Fetc%2Fpasswd/audio",
    "/v1/jobs/%2e%2e%2f%2e%2e%2fapi.py/audio",
    "/v1/jobs/....//....//etc/passwd/audio",
    "/v1/jobs/%00/audio",
    "/static/../api.py",
    "/static/..%2fapi.py",
    "/static/%2e%2e/jobs.py",
    "/static/../../../../etc/passwd",
])
def test_traversal_attempts_find_nothing(server: Any, path: str) -> None:
    status, body = raw_get(server.url, server.key, path)
    assert status in (400, 404), (status, body[:200])
    assert b"root:" not in body and b"import" not in body


def test_page_and_static_files_are_served(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<textarea id=\"prompt\"" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert client.get("/openapi.json").json()["info"]["title"] == "TAG"
    for reply in (page, script, client.get("/v1/health"), client.get("/v1/jobs/" + "0" * 32)):
        assert reply.headers["x-content-type-options"] == "nosniff", reply.url
        assert reply.headers["referrer-policy"] == "no-referrer"


# --- servers with tight limits ----------------------------------------------------------------------------------
def test_rate_limit_answers_429_with_retry_after(make_server: Any) -> None:
    with make_server({"rate_limit": 6, "rate_burst": 3}) as srv:
        with srv.client() as c:
            answers = [c.post("/v1/jobs", json={"prompt": ""}) for _ in range(4)]
            assert [a.status_code for a in answers] == [400, 400, 400, 429]
            assert answers[-1].json()["error"]["code"] == "rate_limited"
            assert 1 <= int(answers[-1].headers["retry-after"]) <= 10
            assert c.get("/v1/backends").status_code == 200  # reading is not rate limited


def test_active_job_limit_per_client(make_server: Any) -> None:
    with make_server({"max_active_per_client": 1}) as srv:
        with srv.client() as c:
            first = c.post("/v1/jobs", json={"prompt": "a", "duration": 1, "options": {"delay": 1}})
            assert first.status_code == 202
            second = c.post("/v1/jobs", json={"prompt": "b", "duration": 1})
            assert error_of(second, 429)["code"] == "too_many_jobs"
            wait_done(c, first.json())
            assert c.post("/v1/jobs", json={"prompt": "b", "duration": 1}).status_code == 202


def test_results_expire_and_files_are_removed(make_server: Any) -> None:
    with make_server({"result_ttl": 1.0}) as srv:
        store_dir = srv.frontend.store.dir
        with srv.client() as c:
            job = c.post("/v1/jobs", json={"prompt": "short lived", "duration": 1}).json()
            assert wait_done(c, job)["state"] == "done"
            assert c.get(job["links"]["audio"]["flac"]).status_code == 200
            assert sorted(p.suffix for p in store_dir.iterdir()) == [".flac", ".wav"]
            time.sleep(1.8)
            status = c.get(job["links"]["status"]).json()
            assert status["state"] == "expired" and status["error"]["code"] == "expired"
            assert error_of(c.get(job["links"]["audio"]["wav"]), 410)["code"] == "expired"
            assert list(store_dir.iterdir()) == []
    assert not store_dir.exists()  # the private results folder goes away with the server


def test_api_without_a_key_configured(make_server: Any) -> None:
    with make_server(api_key="") as srv:
        with srv.client(key=None) as c:
            assert c.get("/v1/health").json()["auth_required"] is False
            assert c.get("/v1/backends").status_code == 200


def test_backend_without_a_worker_fails_the_job_not_the_server(make_server: Any) -> None:
    with make_server(serve=()) as srv, srv.client() as c:
        job = c.post("/v1/jobs", json={"prompt": "anyone there", "duration": 1})
        assert job.status_code == 202
        status = wait_done(c, job.json())
        assert status["state"] == "failed" and status["error"]["code"] == "no_worker"
        health = c.get("/v1/health")
        assert health.status_code == 200  # the server itself is fine: a liveness probe must not restart it
        assert health.json()["status"] == "degraded" and health.json()["backends_served"] == 0
        assert health.json()["problems"] == ["no live worker serves any offered backend"]


def test_forwarded_for_is_ignored_unless_a_proxy_is_trusted(make_server: Any) -> None:
    """By default no local process can claim to be another client (a fresh rate-limit bucket) with a header."""
    with make_server({"rate_limit": 6, "rate_burst": 1}) as srv:
        with srv.client() as c:
            first = c.post("/v1/jobs", json={"prompt": ""}, headers={"X-Forwarded-For": "203.0.113.1"})
            second = c.post("/v1/jobs", json={"prompt": ""}, headers={"X-Forwarded-For": "203.0.113.2"})
            assert [first.status_code, second.status_code] == [400, 429]
    with make_server({"rate_limit": 6, "rate_burst": 1, "forwarded_allow_ips": "127.0.0.1"}) as srv:
        with srv.client() as c:
            answers = [c.post("/v1/jobs", json={"prompt": ""}, headers={"X-Forwarded-For": f"203.0.113.{i}"})
                       for i in (1, 2)]
            assert [a.status_code for a in answers] == [400, 400]  # behind a trusted proxy: two real clients


class _StereoPlugin:
    @hookimpl
    def register_backends(self, register) -> None:
        register(StereoToneBackend)


def test_stereo_is_kept_in_every_download(make_server: Any) -> None:
    if not plugins.get_plugin_manager().has_plugin("http-test-stereo"):
        plugins.register_plugin(_StereoPlugin(), name="http-test-stereo")
    with make_server({"backends": "stereo_tone"}, serve=("stereo_tone",)) as srv, srv.client() as c:
        job = c.post("/v1/jobs", json={"prompt": "wide", "duration": 1, "seed": 3, "backend": "stereo_tone"}).json()
        done = wait_done(c, job)
        assert (done["channels"], done["sample_rate"]) == (2, 44100)
        for fmt, rate in (("wav", 44100), ("flac", 44100), ("ogg", 48000)):
            clip = audio_io.decode(c.get(job["links"]["audio"][fmt]).content)
            assert (clip.channels, clip.sample_rate) == (2, rate)
            left, right = clip.samples
            assert np.abs(left).max() > 0.2 and np.abs(right - 0.5 * left).max() < (0.05 if fmt == "ogg" else 1e-3)

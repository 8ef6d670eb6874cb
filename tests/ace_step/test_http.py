"""The HTTP API lists the lyrics option from the spec (no frontend code names the backend) and serves songs."""
from __future__ import annotations

import threading
import time

import httpx
import numpy as np

from tag_http.frontend import HttpFrontend
from tagcore import audio as audio_io
from tagcore.config import Config
from tagcore.inprocess import InProcessTransport
from tagcore.worker import GeneratorService, served_specs, start_embedded_worker


def test_backends_openapi_and_a_song_with_lyrics(ace):
    config = Config(default_backend="ace_step", max_duration=600.0)
    transport = InProcessTransport(config)
    backends = {"ace_step": ace}
    service = GeneratorService(backends, transport.job_source(served_specs(backends)), config)
    worker, worker_stop = start_embedded_worker(service)
    frontend = HttpFrontend(config, transport, {"port": 0, "backends": "ace_step", "api_key": ""})
    stop = threading.Event()
    thread = threading.Thread(target=frontend.run, args=(stop,), daemon=True)
    thread.start()
    assert frontend.ready.wait(15)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{frontend.port}", timeout=30) as client:
            (info,) = client.get("/v1/backends").json()["backends"]
            options = {o["name"]: o for o in info["options"]}
            assert options["lyrics"]["multiline"] is True and options["lyrics"]["type"] == "str"
            assert options["steps"]["multiline"] is False and "weights" not in options
            assert info["durations"]["min"] == 10.0 and info["channels"] == 2 and info["sample_rate"] == 48000
            schema = client.get("/openapi.json").json()["components"]["schemas"]["OptionInfo"]
            assert "multiline" in schema["properties"]
            job = client.post("/v1/jobs", json={"prompt": "folk song", "duration": 10, "seed": 3,
                                                "options": {"lyrics": "[verse]\nour cat", "steps": 2}})
            assert job.status_code == 202, job.text
            status = _wait(client, job.json())
            assert status["state"] == "done", status
            song = audio_io.decode(client.get(status["links"]["audio"]["wav"]).content)
            assert (song.sample_rate, song.channels, song.frames) == (48000, 2, 480000)
            expected = ace.generate("folk song", 10.0, seed=3, options={"lyrics": "[verse]\nour cat", "steps": 2})
            assert np.abs(song.samples - expected.audio.samples).max() <= 1e-3 + 1 / 32768
    finally:
        stop.set()
        thread.join(15)
        worker_stop.set()
        worker.join(5)


def _wait(client: httpx.Client, job: dict) -> dict:
    for _ in range(1200):  # a bound, not a timing assumption: the tiny model takes about a second
        status = client.get(job["links"]["status"]).json()
        if status["state"] in ("done", "failed", "cancelled", "expired"):
            return status
        time.sleep(0.2)
    raise AssertionError("the job did not finish")

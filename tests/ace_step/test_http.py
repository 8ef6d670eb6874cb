"""The HTTP API and the page offer the lyrics option from the spec (no frontend code names the backend)."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tagcore import audio as audio_io

LYRICS = "[verse]\nour cat\nsleeps all day\n[chorus]\noh cat"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _wait(client: httpx.Client, job: dict) -> dict:
    for _ in range(1200):  # a bound, not a timing assumption: the tiny model takes about a second
        status = client.get(job["links"]["status"]).json()
        if status["state"] in ("done", "failed", "cancelled", "expired"):
            return status
        time.sleep(0.2)
    raise AssertionError("the job did not finish")


def test_backends_openapi_and_a_song_with_lyrics(ace, ace_server):
    with httpx.Client(base_url=ace_server, timeout=30) as client:
        (info,) = client.get("/v1/backends").json()["backends"]
        options = {o["name"]: o for o in info["options"]}
        assert options["lyrics"]["multiline"] is True and options["lyrics"]["type"] == "str"
        assert options["steps"]["multiline"] is False and "weights" not in options
        assert info["durations"]["min"] == 10.0 and info["channels"] == 2 and info["sample_rate"] == 48000
        schema = client.get("/openapi.json").json()["components"]["schemas"]["OptionInfo"]
        assert "multiline" in schema["properties"]
        job = client.post("/v1/jobs", json={"prompt": "folk song", "duration": 10, "seed": 3,
                                            "options": {"lyrics": LYRICS, "steps": 2}})
        assert job.status_code == 202, job.text
        status = _wait(client, job.json())
        assert status["state"] == "done", status
        song = audio_io.decode(client.get(status["links"]["audio"]["wav"]).content)
        assert (song.sample_rate, song.channels, song.frames) == (48000, 2, 480000)
        expected = ace.generate("folk song", 10.0, seed=3, options={"lyrics": LYRICS, "steps": 2})
        assert np.abs(song.samples - expected.audio.samples).max() <= 1e-3 + 1 / 32768


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")
def test_page_has_a_lyrics_text_area_that_reaches_the_job(ace_server):
    sync_api = pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import expect

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page()
            page.goto(ace_server)
            lyrics = page.locator("#text-options textarea[data-option=lyrics]")
            expect(lyrics).to_be_visible()  # in view, not folded into the options box
            assert page.locator("#options [data-option=lyrics]").count() == 0
            page.fill("#prompt", "folk song")
            page.fill("#duration", "10")
            page.fill("#seed", "5")
            lyrics.fill(LYRICS)
            with page.expect_response(lambda r: r.url.endswith("/v1/jobs") and r.request.method == "POST") as sent:
                page.click("#generate")
            assert sent.value.request.post_data_json["options"] == {"lyrics": LYRICS}
            expect(page.locator("#result")).to_be_visible(timeout=120_000)
        finally:
            browser.close()

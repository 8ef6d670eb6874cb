"""The web page in a real headless Chromium: key entry, a whole generation with live progress, again/variation,
downloads, the history, and audio prompts (a clip to continue, a voice sample). Screenshots are kept in
tests/http/artifacts/ (git-ignored) for a human to look at."""
from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tag_testkit.tone import PresetToneBackend, StereoToneBackend, ToneBackend, VoiceToneBackend
from tagcore import Audio, Capabilities, hookimpl, plugins
from tagcore import audio as audio_io

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="needs Debian's chromium (apt-get install -y chromium chromium-driver)")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev dependency group)")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--headless", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def browser() -> Any:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        yield browser
        browser.close()


def test_page_generates_plays_repeats_and_downloads(server: Any, browser: Any, tmp_path: Path) -> None:
    context = browser.new_context(accept_downloads=True, viewport={"width": 900, "height": 1100})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" and "401" not in msg.text
            else None)
    expect = sync_api.expect

    page.goto(server.url)
    # The server wants a key: the page says so and offers the key field.
    expect(page.locator("#error")).to_contain_text("API key")
    expect(page.locator("#key-box")).to_be_visible()
    page.fill("#api-key", server.key)
    page.click("#key-form button")
    expect(page.locator("#backend option")).to_have_count(1)
    expect(page.locator("#error")).to_be_hidden()
    assert page.eval_on_selector("#duration", "e => [e.min, e.max]") == ["1", "20"]

    page.fill("#prompt", "a calm synth drone")
    page.fill("#duration", "2")
    page.fill("#seed", "1234")
    page.click("#options-box summary")
    page.fill("[data-option=delay]", "2")
    page.click("#generate")
    expect(page.locator("#status")).to_contain_text("Generating")  # live progress from the event stream
    expect(page.locator("#generate")).to_be_disabled()
    expect(page.locator("#result")).to_be_visible(timeout=20_000)
    expect(page.locator("#result-seed")).to_have_text("1234")
    expect(page.locator("#result-meta")).to_contain_text("tone · 2 s")
    assert page.eval_on_selector("#player", "e => e.src").startswith("blob:")
    duration = page.eval_on_selector("#player", """e => e.readyState >= 1 ? e.duration :
        new Promise(ok => e.addEventListener('loadedmetadata', () => ok(e.duration), {once: true}))""")
    assert abs(duration - 2.0) < 0.05
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page.png"), full_page=True)

    with page.expect_download() as download_info:
        page.click("[data-format=flac]")
    saved = tmp_path / "clip.flac"
    download_info.value.save_as(saved)
    clip = audio_io.read(saved)
    assert clip.sample_rate == 16000 and clip.frames == 32000

    page.click("#again")
    expect(page.locator("#history li")).to_have_count(2, timeout=20_000)
    expect(page.locator("#result-seed")).to_have_text("1234")
    page.click("#variation")
    expect(page.locator("#history li")).to_have_count(3, timeout=20_000)
    expect(page.locator("#result-seed")).not_to_have_text("1234")
    assert page.input_value("#seed") == ""

    page.reload()  # the key and the last results survive in localStorage
    expect(page.locator("#history li")).to_have_count(3)
    expect(page.locator("#backend option")).to_have_count(1)
    page.locator("#history li button").first.click()
    expect(page.locator("#result")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "page-history.png"), full_page=True)
    assert problems == []
    context.close()


def signed_in(server: Any, browser: Any) -> tuple[Any, Any]:
    """A fresh browser context on the page with the server's key stored and the backends loaded."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url)
    page.evaluate(f"localStorage.setItem('tag.apiKey', {server.key!r})")
    page.reload()
    sync_api.expect(page.locator("#backend option")).to_have_count(1)
    return context, page


def test_page_shows_validation_errors(server: Any, browser: Any) -> None:
    context, page = signed_in(server, browser)
    expect = sync_api.expect
    page.fill("#prompt", "too long")
    page.eval_on_selector("#duration", "e => { e.removeAttribute('max'); e.value = '50'; }")
    page.click("#generate")
    expect(page.locator("#error")).to_contain_text("out of range: tone makes 1 to 20 s")
    expect(page.locator("#generate")).to_be_enabled()
    context.close()


# --- audio prompts ----------------------------------------------------------------------------------------------
class PlainTone(ToneBackend):
    """The tone backend without audio prompts: the page must hide (and forget) the file field for it."""

    name = "plain_tone"
    aliases = ()
    capabilities = Capabilities(seed=True, audio_prompt=False)


class _AudioPromptBackends:
    @hookimpl
    def register_backends(self, register) -> None:  # type: ignore[no-untyped-def]
        register(PlainTone)
        register(VoiceToneBackend)
        register(StereoToneBackend)


@pytest.fixture()
def prompt_backends() -> Iterator[None]:
    """Register plain_tone and voice_tone for one test only (registered for good they would show in other tests)."""
    plugins.register_plugin(_AudioPromptBackends(), name="http-test-audio-prompts")
    yield
    plugins.unregister_plugin("http-test-audio-prompts")


def _tone_file(path: Path, seconds: float) -> Path:
    t = np.arange(int(16000 * seconds)) / 16000
    return audio_io.write(path, Audio(0.3 * np.sin(2 * np.pi * 330 * t), 16000))


# Playwright cannot show a multipart body holding a file, so the page's fetch is watched from inside: every form it
# posts is kept in window.sentForms as {field: value, file field: "name:size"}.
FORM_SPY = """
window.sentForms = [];
const realFetch = window.fetch;
window.fetch = (url, options = {}) => {
  if (options.body instanceof FormData) {
    window.sentForms.push(Object.fromEntries([...options.body.entries()].map(
      ([k, v]) => [k, v instanceof File ? `${v.name}:${v.size}` : v])));
  }
  return realFetch(url, options);
};
"""


def _open_with_key(browser: Any, server: Any) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(viewport={"width": 900, "height": 1100})
    context.add_init_script(FORM_SPY)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.goto(server.url)
    page.evaluate(f"localStorage.setItem('tag.apiKey', {server.key!r})")
    page.reload()
    return context, page, problems


def test_page_continues_an_uploaded_clip(server: Any, browser: Any, tmp_path: Path) -> None:
    expect = sync_api.expect
    clip = _tone_file(tmp_path / "start.wav", 1.0)
    context, page, problems = _open_with_key(browser, server)
    expect(page.locator("#backend option")).to_have_count(1)
    field = page.get_by_label("Audio to continue (optional)")  # found through its <label>: accessible
    expect(field).to_be_visible()
    assert field.get_attribute("accept") == "audio/*"
    expect(page.locator("#audio-prompt-hint")).to_contain_text("shorter than the duration (at most 60 s)")
    expect(page.locator("#audio-prompt-clear")).to_be_hidden()

    # No description: the server accepts that only when the clip to continue arrived with the request.
    page.fill("#duration", "3")
    page.fill("#seed", "77")
    field.set_input_files(str(clip))
    expect(page.locator("#audio-prompt-clear")).to_be_visible()
    assert page.eval_on_selector("#prompt", "e => e.required") is False
    with page.expect_request("**/v1/jobs/upload"):
        page.click("#generate")
    file_field = f"start.wav:{clip.stat().st_size}"
    assert page.evaluate("window.sentForms") == [
        {"prompt": "", "duration": "3", "backend": "tone", "seed": "77", "options": "{}", "audio_prompt": file_field}]
    expect(page.locator("#result")).to_be_visible(timeout=20_000)
    expect(page.locator("#result-meta")).to_contain_text("tone · 3 s")
    expect(page.locator("#result-audio-prompt")).to_have_text("Audio prompt: start.wav (continued)")
    expect(page.locator("#result-prompt")).to_have_text("(no description)")

    with page.expect_request("**/v1/jobs/upload"):  # "again" sends the same file once more
        page.click("#again")
    assert page.evaluate("window.sentForms[1].audio_prompt") == file_field
    expect(page.locator("#history li")).to_have_count(2, timeout=20_000)
    expect(page.locator("#result-seed")).to_have_text("77")
    expect(page.locator("#history li").first).to_contain_text("from start.wav")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-audio-prompt.png"), full_page=True)

    # The server's checks reach the error box: a clip as long as the duration leaves nothing to generate...
    page.fill("#duration", "1")
    page.click("#generate")
    expect(page.locator("#error")).to_contain_text("it must be shorter than the requested 1 s")
    expect(page.locator("#generate")).to_be_enabled()
    # ... and so does a file over the server's upload limit (300 kB in this server).
    field.set_input_files(str(_tone_file(tmp_path / "long.wav", 12.0)))
    page.fill("#duration", "15")
    page.click("#generate")
    expect(page.locator("#error")).to_contain_text("300000 byte limit")
    expect(page.locator("#generate")).to_be_enabled()

    page.click("#audio-prompt-clear")  # without a clip the description is required again
    assert page.eval_on_selector("#audio-prompt", "e => e.files.length") == 0
    assert page.eval_on_selector("#prompt", "e => e.required") is True
    expect(page.locator("#audio-prompt-clear")).to_be_hidden()
    assert problems == []
    context.close()


def test_page_voice_sample_and_backend_without_audio_prompt(make_server: Any, browser: Any, tmp_path: Path,
                                                            prompt_backends: None) -> None:
    expect = sync_api.expect
    ARTIFACTS.mkdir(exist_ok=True)
    sample = _tone_file(tmp_path / "voice.wav", 3.0)
    with make_server({"backends": "tone,voice_tone,plain_tone"}, serve=("tone", "voice_tone", "plain_tone")) as srv:
        context, page, problems = _open_with_key(browser, srv)
        expect(page.locator("#backend option")).to_have_count(3)
        page.select_option("#backend", "tone")
        page.set_input_files("#audio-prompt", str(sample))
        page.select_option("#backend", "plain_tone")  # takes no audio prompt: field hidden and emptied
        expect(page.locator("#audio-prompt-box")).to_be_hidden()
        assert page.eval_on_selector("#audio-prompt", "e => e.files.length") == 0

        page.select_option("#backend", "voice_tone")
        field = page.get_by_label("Voice sample (optional)")
        expect(field).to_be_visible()
        expect(page.locator("#duration-label")).to_have_text("At most (s)")
        expect(page.locator("#audio-prompt-hint")).to_contain_text("up to 30 s")
        # A voice sample may be longer than the clip asked for (a clip to continue may not).
        page.fill("#prompt", "hello there")
        page.fill("#duration", "2")
        field.set_input_files(str(sample))
        assert page.eval_on_selector("#prompt", "e => e.required") is True  # speech still needs its text
        with page.expect_request("**/v1/jobs/upload"):
            page.click("#generate")
        expect(page.locator("#result")).to_be_visible(timeout=20_000)
        expect(page.locator("#result-audio-prompt")).to_have_text("Audio prompt: voice.wav (voice sample)")
        expect(page.locator("#result-meta")).to_contain_text("voice_tone")
        page.screenshot(path=str(ARTIFACTS / "page-voice.png"), full_page=True)
        first_seed = page.text_content("#result-seed")
        with page.expect_request("**/v1/jobs/upload"):  # the variation keeps the voice
            page.click("#variation")
        sent = page.evaluate("window.sentForms")
        assert [form["audio_prompt"] for form in sent] == [f"voice.wav:{sample.stat().st_size}"] * 2
        assert "seed" not in sent[1]  # a new random seed
        expect(page.locator("#history li")).to_have_count(2, timeout=20_000)
        expect(page.locator("#result-seed")).not_to_have_text(first_seed or "")

        # After a reload the file is gone: repeating such a result says so instead of dropping the voice.
        page.reload()
        expect(page.locator("#history li")).to_have_count(2)
        page.locator("#history li button").first.click()
        expect(page.locator("#result-audio-prompt")).to_have_text("Audio prompt: voice.wav (voice sample)")
        page.click("#again")
        expect(page.locator("#error")).to_contain_text("choose it again")

        page.select_option("#backend", "plain_tone")  # no file: the plain JSON route, no audio prompt shown
        page.fill("#prompt", "a plain beep")
        with page.expect_request(lambda r: r.url.endswith("/v1/jobs") and r.method == "POST"):
            page.click("#generate")
        expect(page.locator("#result-meta")).to_contain_text("plain_tone", timeout=20_000)
        expect(page.locator("#result-audio-prompt")).to_be_hidden()
        expect(page.locator("#error")).to_be_hidden()
        assert problems == []
        context.close()


def test_page_cancel_button_stops_the_job(server: Any, browser: Any) -> None:
    context, page = signed_in(server, browser)
    expect = sync_api.expect
    page.fill("#prompt", "a very long drone")
    page.fill("#duration", "2")
    page.click("#options-box summary")
    page.fill("[data-option=delay]", "100")
    page.click("#generate")
    expect(page.locator("#status")).to_contain_text("Generating")
    page.click("#cancel")
    expect(page.locator("#error")).to_contain_text("cancelled")
    expect(page.locator("#cancel")).to_be_hidden()
    expect(page.locator("#generate")).to_be_enabled()  # well before the 100 s the job would have taken
    context.close()
def test_an_open_page_keeps_its_job_and_closing_the_tab_cancels_it(make_server: Any, browser: Any) -> None:
    """The page follows its job with an event stream, so the job lives as long as the tab (README: HTTP API)."""
    with make_server({"disconnect_grace": 1}) as srv, srv.client() as api:
        context, page = signed_in(srv, browser)
        page.fill("#prompt", "a drone for an open tab")
        page.fill("#duration", "2")
        page.click("#options-box summary")
        page.fill("[data-option=delay]", "100")
        with page.expect_response(lambda r: r.url.endswith("/v1/jobs") and r.request.method == "POST") as posted:
            page.click("#generate")
        status_url = f"/v1/jobs/{posted.value.json()['id']}"
        sync_api.expect(page.locator("#status")).to_contain_text("Generating")
        time.sleep(2.5)  # past the grace
        assert api.get(status_url).json()["state"] == "running"
        page.close()
        end = time.monotonic() + 30
        while (state := api.get(status_url).json()["state"]) == "running" and time.monotonic() < end:
            time.sleep(0.1)
        assert state == "cancelled"
        context.close()


def test_page_reconnects_an_event_stream_that_breaks(server: Any, browser: Any) -> None:
    context, page = signed_in(server, browser)
    opened: list[str] = []

    def cut_the_first(route: Any) -> None:  # a proxy ending the first stream before the job finished
        opened.append(route.request.url)
        if len(opened) == 1:
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body="retry: 300\n\n")
        else:
            route.continue_()

    page.route("**/events", cut_the_first)
    page.fill("#prompt", "a stream cut by a proxy")
    page.fill("#duration", "1")
    page.click("#options-box summary")
    page.fill("[data-option=delay]", "1")  # still running when the first stream ends (else it may be done at once)
    page.click("#generate")
    sync_api.expect(page.locator("#status")).to_have_text("Done")
    assert len(opened) == 2 and opened[0] == opened[1]
    context.close()


def test_page_says_when_no_worker_serves(make_server: Any, browser: Any) -> None:
    with make_server(serve=()) as srv:
        context, page, problems = _open_with_key(browser, srv)
        sync_api.expect(page.locator("#error")).to_have_text(
            "This server cannot serve jobs now: no live worker serves any offered backend.")
        assert problems == []
        context.close()


def test_page_plays_stereo_and_says_so(make_server: Any, browser: Any, prompt_backends: None) -> None:
    expect = sync_api.expect
    with make_server({"backends": "stereo_tone"}, serve=("stereo_tone",)) as srv:
        context, page, problems = _open_with_key(browser, srv)
        page.fill("#prompt", "a wide beep")
        page.fill("#duration", "2")
        page.click("#generate")
        expect(page.locator("#result")).to_be_visible(timeout=20_000)
        expect(page.locator("#result-meta")).to_contain_text("stereo_tone · 2 s · stereo 44.1 kHz")
        assert page.eval_on_selector("#player", "e => e.src").startswith("blob:")  # the stereo WAV (see test_api)
        assert problems == []
        context.close()


# --- a backend's choices (Make-An-Audio's speed preset) ----------------------------------------------------------
class _PresetBackend:
    @hookimpl
    def register_backends(self, register) -> None:  # type: ignore[no-untyped-def]
        register(PresetToneBackend)


@pytest.fixture()
def preset_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Register preset_tone for one test; yields the presets it generated with, in order."""
    seen: list[str] = []
    monkeypatch.setattr(PresetToneBackend, "presets", seen)
    plugins.register_plugin(_PresetBackend(), name="http-test-preset")
    yield seen
    plugins.unregister_plugin("http-test-preset")


def _posted_job(page: Any) -> Any:
    return page.expect_request(lambda r: r.url.endswith("/v1/jobs") and r.method == "POST")


def test_page_offers_the_speed_preset_and_sends_the_pick(make_server: Any, browser: Any,
                                                         preset_backend: list[str]) -> None:
    expect = sync_api.expect
    with make_server({"backends": "tone,preset_tone"}, serve=("tone", "preset_tone")) as srv:
        context, page, problems = _open_with_key(browser, srv)
        expect(page.locator("#backend option")).to_have_count(2)
        page.select_option("#backend", "preset_tone")
        page.click("#options-box summary")
        preset = page.locator("select[data-option=preset]")  # drawn from the backend's spec, like every option
        expect(preset).to_be_visible()
        assert preset.locator("option").all_text_contents() == ["quality", "fast"]
        assert preset.input_value() == "quality"
        assert "fewer steps" in (page.locator("label", has=preset).get_attribute("title") or "")

        page.fill("#prompt", "rain on a tin roof")
        page.fill("#duration", "2")
        preset.select_option("fast")
        with _posted_job(page) as sent:
            page.click("#generate")
        assert sent.value.post_data_json["options"] == {"preset": "fast"}
        expect(page.locator("#result")).to_be_visible(timeout=20_000)
        assert preset_backend == ["fast"]
        page.click("#again")  # a repeat keeps the options it was made with
        expect(page.locator("#history li")).to_have_count(2, timeout=20_000)
        assert preset_backend == ["fast", "fast"]

        preset.select_option("quality")  # the default is not sent: the backend applies it
        with _posted_job(page) as sent:
            page.click("#generate")
        assert sent.value.post_data_json["options"] == {}
        expect(page.locator("#history li")).to_have_count(3, timeout=20_000)
        assert preset_backend == ["fast", "fast", "quality"]

        page.select_option("#backend", "tone")  # a backend without the option does not show it
        expect(page.locator("[data-option=preset]")).to_have_count(0)
        assert problems == []
        context.close()

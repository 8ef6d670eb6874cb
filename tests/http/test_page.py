"""The web page in a real headless Chromium: key entry, a whole generation with live progress, again/variation,
downloads and the history. A screenshot is kept in tests/http/artifacts/ (git-ignored) for a human to look at."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

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


def test_page_shows_validation_errors(server: Any, browser: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url)
    page.evaluate(f"localStorage.setItem('tag.apiKey', {server.key!r})")
    page.reload()
    expect = sync_api.expect
    expect(page.locator("#backend option")).to_have_count(1)
    page.fill("#prompt", "too long")
    page.eval_on_selector("#duration", "e => { e.removeAttribute('max'); e.value = '50'; }")
    page.click("#generate")
    expect(page.locator("#error")).to_contain_text("out of range: tone makes 1 to 20 s")
    expect(page.locator("#generate")).to_be_enabled()
    context.close()

"""`tag bot --metrics-port`: the bot's own metrics server, with its embedded worker's counters, as the CLI wires it."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tag_testkit.fake_telegram import FakeTelegram
from tag_testkit.prometheus import promtool_problems

from .conftest import BotHarness


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    text = httpx.get(url, timeout=30).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_tag_bot_serves_metrics_on_its_own_port(fake_telegram: FakeTelegram, tmp_path: Path):
    env = {**os.environ, "TAG_CONFIG": str(tmp_path / "none.toml"), "TAG_PLUGIN_MODULES": "tag_testkit.tone",
           "TAG_DEFAULT_BACKEND": "tone", "TAG_TELEGRAM_TOKEN": fake_telegram.token,
           "TAG_TELEGRAM_API_URL": fake_telegram.base_url, "TAG_TELEGRAM_POLL_TIMEOUT": "1",
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    tag = Path(sys.executable).with_name("tag")
    bot = subprocess.Popen([str(tag), "bot", "-b", "tone", "--metrics-port", "0"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = ""
        for line in bot.stdout:  # type: ignore[union-attr]
            if found := re.search(rb"metrics on (http://\S+)", line):
                url = found.group(1).decode()
                break
        assert url.startswith("http://127.0.0.1:"), f"the bot exited ({bot.poll()}) without serving metrics"
        end = time.monotonic() + 60
        while not fake_telegram.polls:
            assert bot.poll() is None and time.monotonic() < end, "the bot never polled"
            time.sleep(0.1)
        harness = BotHarness(fake_telegram, None)  # type: ignore[arg-type]
        harness.ask(7, "a bell")
        harness.audio_for(7, timeout=60)
        end = time.monotonic() + 30
        ok = ("tag_jobs_total", frozenset({"backend": "tone", "outcome": "ok"}.items()))
        while (table := scrape(url)).get(ok) != 1:
            assert time.monotonic() < end, f"the embedded worker's job never showed: {sorted(table)[:20]}"
            time.sleep(0.2)
        assert table[("tag_workers", frozenset({"backend": "tone"}.items()))] == 1
        assert table[("tag_queue_depth", frozenset({"backend": "tone"}.items()))] == 0
        assert promtool_problems(httpx.get(url, timeout=30).content) == ""
    finally:
        bot.terminate()
        bot.wait(30)

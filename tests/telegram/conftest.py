"""Fixtures that run the real bot against the fake Bot API server, over the in-process transport."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from telebot import apihelper

import tag_testkit.tone as tone_module
from tag_testkit.fake_telegram import Call, FakeTelegram
from tag_testkit.tone import PresetToneBackend, StereoToneBackend, ToneBackend, VoiceToneBackend
from tag_telegram.frontend import TelegramFrontend
from tagcore import Capabilities, hookimpl, plugins
from tagcore.config import Config
from tagcore.inprocess import InProcessTransport
from tagcore.transport import Transport
from tagcore.worker import GeneratorService, served_specs, start_embedded_worker


class ProbeTone(ToneBackend):
    """A second test backend: no audio prompts, so the bot's capability checks and backend choice show."""

    name = "probe"
    aliases = ()
    capabilities = Capabilities(seed=True, batch=False, audio_prompt=False)


class LongNamedTone(ToneBackend):
    """A backend whose name does not fit in a button's 64 bytes of callback data."""

    name = "tone_with_a_name_far_too_long_for_the_callback_data_of_a_telegram_button"
    aliases = ()


class _ProbePlugin:
    @hookimpl
    def register_backends(self, register) -> None:
        register(ProbeTone)
        register(LongNamedTone)
        register(VoiceToneBackend)
        register(StereoToneBackend)
        register(PresetToneBackend)


def _register_test_backends() -> None:
    manager = plugins.get_plugin_manager()
    if not manager.has_plugin("tag_testkit.tone"):
        plugins.register_plugin(tone_module, name="tag_testkit.tone")
    if not manager.has_plugin("telegram-test-probe"):
        plugins.register_plugin(_ProbePlugin(), name="telegram-test-probe")


class BotHarness:
    """A running bot plus helpers that act like users and read what the bot sent."""

    def __init__(self, fake: FakeTelegram, frontend: TelegramFrontend) -> None:
        self.fake = fake
        self.frontend = frontend

    def keyboard(self, call: Call) -> list[list[dict[str, Any]]]:
        return json.loads(call.params["reply_markup"])["inline_keyboard"]

    def buttons(self, call: Call) -> dict[str, str]:
        """Button label -> callback data of a message the bot sent."""
        return {b["text"]: b["callback_data"] for row in self.keyboard(call) for b in row}

    def prompt(self, user: int, text: str, timeout: float = 10.0) -> Call:
        """Send a prompt; return the bot's duration question (the message with the keyboard)."""
        before = len(self.fake.calls_of("sendMessage", user))
        self.fake.push_text(user, text)
        calls = self.fake.wait_for(lambda c: c.method == "sendMessage" and c.chat_id == user, before + 1, timeout)
        question = calls[before]
        assert "reply_markup" in question.params, f"expected a duration keyboard, got {question.params['text']!r}"
        return question

    def press(self, user: int, message: Call, label: str) -> None:
        self.fake.push_callback(user, message, self.buttons(message)[label])

    def ask(self, user: int, text: str, duration: str = "5 s") -> Call:
        question = self.prompt(user, text)
        self.press(user, question, duration)
        return question

    def audio_for(self, user: int, count: int = 1, timeout: float = 15.0) -> list[Call]:
        return self.fake.wait_for(lambda c: c.method in ("sendVoice", "sendAudio") and c.chat_id == user,
                                  count, timeout)

    def replies(self, user: int) -> list[str]:
        return [c.params.get("text", "") for c in self.fake.calls_of("sendMessage", user)]

    def wait_reply(self, user: int, text: str, timeout: float = 10.0) -> Call:
        return self.fake.wait_method("sendMessage", user, text=text, timeout=timeout)[-1]


@pytest.fixture
def fake_telegram(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTelegram]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    # The frontend sets these process-wide globals from `api_url`; restore them after each test.
    monkeypatch.setattr(apihelper, "API_URL", None)
    monkeypatch.setattr(apihelper, "FILE_URL", None)
    with FakeTelegram() as fake:
        yield fake


@pytest.fixture
def start_bot(fake_telegram: FakeTelegram, tmp_path: Path) -> Iterator[Callable[..., BotHarness]]:
    """Start a bot: `start_bot(settings={...}, backends=("tone",), transport=None)`. The bots of one test share
    one store (a file in the test's folder), as a restarted bot would."""
    _register_test_backends()
    cleanups: list[Callable[[], None]] = []

    def start(settings: Mapping[str, Any] | None = None, backends: tuple[str, ...] = ("tone", "probe"),
              transport: Transport | None = None, config: Config | None = None) -> BotHarness:
        config = config or Config(sections={"telegram": {"token": fake_telegram.token}}, default_backend="tone")
        if transport is None:
            transport = InProcessTransport(config)
            for name in backends:
                backend = plugins.backends().get(name)({})
                service = GeneratorService({name: backend}, transport.job_source(served_specs({name: backend})), config, max_batch=4)
                thread, stop_worker = start_embedded_worker(service)
                cleanups.append(lambda t=thread, s=stop_worker: (s.set(), t.join(5)))
        merged = {"api_url": fake_telegram.base_url, "poll_timeout": 1, "progress_interval": 0.5,
                  "backends": list(backends), "store": str(tmp_path / "bot.sqlite3"), **dict(settings or {})}
        frontend = TelegramFrontend(config, transport, merged)
        stop = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            try:
                frontend.run(stop)
            except BaseException as exc:  # surfaced by the fixture
                errors.append(exc)

        thread = threading.Thread(target=run, name="bot-under-test", daemon=True)
        thread.start()
        end = time.monotonic() + 10
        while not frontend.ready.is_set():
            assert not errors, errors
            assert time.monotonic() < end, "the bot never started polling"
            time.sleep(0.02)

        def shutdown() -> None:
            if stop.is_set():
                return
            stop.set()
            thread.join(15)
            assert not thread.is_alive(), "the bot did not stop within 15 s"
            assert not errors, errors

        cleanups.insert(0, shutdown)
        harness = BotHarness(fake_telegram, frontend)
        harness.stop = shutdown
        return harness

    yield start
    for cleanup in cleanups:
        cleanup()

"""Songs in the bot with the tiny random ACE-Step pipeline: `/song` with lyrics on the lines below, a prompt's
second paragraph as lyrics, the 10 s minimum on the keyboard, stereo files and mono voice notes, /help, and the
answer when no offered generator takes lyrics."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from tag_testkit.backends import loaded_on_cpu
from tag_testkit.tone import ToneBackend
from tagcore import audio as audio_io
from tagcore.config import Config
from tagcore.inprocess import InProcessTransport
from tagcore.worker import GeneratorService, served_specs, start_embedded_worker

LYRICS = "[verse]\nShe sleeps all day in the sun\n[chorus]\nOh, our cat"


@pytest.fixture(scope="module")
def singer(tmp_path_factory):
    """The tiny ace_step backend, recording the prompt, duration and options of every batch it makes."""
    from tag_ace_step.backend import AceStepBackend
    from tag_testkit.ace_step_tiny import write

    class Recording(AceStepBackend):
        seen: list[tuple[str, float, dict[str, Any]]] = []

        def generate_batch(self, items: Sequence[Any], duration: float, *, options: Mapping[str, Any],
                           progress: Any = None) -> Any:
            self.seen.append((items[0].prompt, duration, dict(options)))
            return super().generate_batch(items, duration, options=options, progress=progress)

    return loaded_on_cpu(Recording, write(tmp_path_factory.mktemp("bot-ace") / "ace"))


def _serve(singer, token: str, default: str):
    config = Config(sections={"telegram": {"token": token}}, default_backend=default)
    transport = InProcessTransport(config)
    backends = {"tone": ToneBackend({}), "ace_step": singer}
    service = GeneratorService(backends, transport.job_source(served_specs(backends)), config)
    thread, stop = start_embedded_worker(service)
    return config, transport, lambda: (stop.set(), thread.join(10))


@pytest.fixture
def served(singer, fake_telegram):
    """A worker serving tone (the default, no lyrics) and ace_step, started per test with its bot."""
    stops = []

    def serve(default: str):
        config, transport, stop = _serve(singer, fake_telegram.token, default)
        stops.append(stop)
        return config, transport
    yield serve
    for stop in stops:
        stop()


def test_song_command_sends_the_lyrics_to_the_generator_that_sings(start_bot, served, singer):
    config, transport = served("tone")
    bot = start_bot({"audio_format": "flac"}, backends=("tone", "ace_step"), transport=transport, config=config)
    bot.fake.push_text(70, "/help")
    help_text = bot.wait_reply(70, "/song").params["text"]
    assert "Songs with lyrics (ace_step)" in help_text and "Current generator: tone" in help_text
    before = len(singer.seen)
    question = bot.prompt(70, "/song a cheerful folk song about our cat\n" + LYRICS)
    assert "a cheerful folk song about our cat" in question.params["text"] and "[verse]" not in question.params["text"]
    assert [label for label in bot.buttons(question) if label.endswith(" s")] == ["10 s", "20 s"]  # 5 s < minimum
    bot.press(70, question, "10 s")
    sent = bot.audio_for(70, timeout=120)[0]
    assert [(prompt, duration, options["lyrics"]) for prompt, duration, options in singer.seen[before:]] == [
        ("a cheerful folk song about our cat", 10.0, LYRICS)]
    clip = audio_io.decode(sent.files["audio"][1])
    assert (clip.channels, clip.sample_rate) == (2, 48000) and abs(clip.duration - 10.0) < 0.05


def test_second_paragraph_is_the_lyrics_and_a_voice_note_is_mono(start_bot, served, singer):
    config, transport = served("ace_step")
    bot = start_bot({"audio_format": "voice", "durations": [5, 12]}, backends=("ace_step", "tone"),
                    transport=transport, config=config)
    question = bot.prompt(71, "lo-fi lullaby, soft piano\n\n" + LYRICS)
    assert [label for label in bot.buttons(question) if label.endswith(" s")] == ["12 s"]
    bot.press(71, question, "12 s")
    sent = bot.audio_for(71, timeout=120)[0]
    prompt, duration, options = singer.seen[-1]
    assert (prompt, duration, options["lyrics"]) == ("lo-fi lullaby, soft piano", 12.0, LYRICS)
    clip = audio_io.decode(sent.files["voice"][1])
    assert clip.channels == 1 and abs(clip.duration - 12.0) < 0.1


def test_song_without_a_generator_that_sings(start_bot):
    bot = start_bot(backends=("tone", "probe"))
    bot.fake.push_text(72, "/song a cheerful folk song about our cat\n" + LYRICS)
    assert "None of the generators of this bot sings lyrics" in bot.wait_reply(72, "sings").params["text"]
    bot.fake.push_text(72, "/help")
    assert "/song" not in bot.wait_reply(72, "Current generator").params["text"]
    question = bot.prompt(72, "rain\n\non a roof")  # no lyrics option: the whole text is the prompt
    assert "rain\n\non a roof" in question.params["text"]


def test_song_needs_a_description(start_bot, served):
    config, transport = served("tone")
    bot = start_bot(backends=("tone", "ace_step"), transport=transport, config=config)
    bot.fake.push_text(73, "/song")
    assert "on the first line" in bot.wait_reply(73, "first line").params["text"]

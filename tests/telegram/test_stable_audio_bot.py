"""The bot's "continue this audio" with Stable Audio 3 (tiny random checkpoint): a voice message is continued by
inpainting and comes back as a mono voice note, or as a stereo FLAC file."""
from __future__ import annotations

import numpy as np
import pytest

from tag_testkit.stable_audio_tiny import write_sa3
from tagcore import Audio
from tagcore import audio as audio_io
from tagcore.config import Config
from tagcore.inprocess import InProcessTransport
from tagcore.worker import GeneratorService, served_specs, start_embedded_worker


@pytest.fixture(scope="module")
def sa3_weights(tmp_path_factory):
    return write_sa3(tmp_path_factory.mktemp("bot-sa3") / "sa3")


@pytest.fixture
def sa3_transport(sa3_weights, fake_telegram):
    from tag_stable_audio.backend import StableAudio3Backend

    config = Config(sections={"telegram": {"token": fake_telegram.token}}, default_backend="stable_audio_3")
    transport = InProcessTransport(config)
    backend = StableAudio3Backend({"weights": str(sa3_weights), "device": "cpu"})
    backends = {"stable_audio_3": backend}
    service = GeneratorService(backends, transport.job_source(served_specs(backends)), config)
    thread, stop = start_embedded_worker(service)
    yield config, transport
    stop.set()
    thread.join(10)


@pytest.mark.parametrize("fmt", ["voice", "flac"])
def test_continue_a_voice_message_with_stable_audio_3(start_bot, sa3_transport, fmt):
    config, transport = sa3_transport
    bot = start_bot({"audio_format": fmt, "durations": [2, 3]}, backends=("stable_audio_3",), transport=transport,
                    config=config)
    t = np.arange(48000) / 48000
    bot.fake.push_voice(90, audio_io.encode(Audio(0.3 * np.sin(2 * np.pi * 330 * t), 48000), "ogg"), duration=1,
                        caption="rain on the roof")
    question = bot.fake.wait_method("sendMessage", 90, text="rain on the roof")[0]
    assert list(bot.buttons(question))[:2] == ["2 s", "3 s"]  # longer than the 1 s clip
    bot.press(90, question, "2 s")
    sent = bot.audio_for(90, timeout=120)[0]
    clip = audio_io.decode(sent.files["voice" if fmt == "voice" else "audio"][1])
    assert abs(clip.duration - 2.0) < 0.05
    assert (clip.channels, clip.sample_rate) == ((1, 48000) if fmt == "voice" else (2, 44100))

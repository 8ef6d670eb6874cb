"""Exactly-once delivery across kill -9 of `tag bot` (a subprocess on a real broker), and state kept over restarts.

The fake Bot API holds uploads on the wire (`FakeTelegram.hold`), so the kill lands deterministically while clips
are being uploaded and more answers wait in the bot's store behind them; answers made while the bot is down wait
in the broker, which is restarted meanwhile. Every clip must then reach its chat once: uploads are counted per
request id (the "again" button of each clip carries it).
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pika
import pytest

import tag_testkit.tone as tone
from tag_testkit.tone import PresetToneBackend
from tag_telegram.delivery import reply_context
from tag_telegram.store import MAX_ATTEMPTS, BotStore
from tag_testkit.broker import (ThreadWorker, amqp_channel, broker_config, broker_env, delete_queues,  # noqa: F401
                                queue_depth, rabbitmq_node, stop_process)
from tag_testkit.fake_telegram import FakeTelegram
from tagcore import plugins
from tagcore.audio_types import Audio
from tagcore.messages import SoundRequest, SoundResponse, encode
from tagcore.runtime import build_transport

UPLOADS = ("sendVoice", "sendAudio", "sendDocument")


def _bot(env: dict[str, str], log: Path) -> subprocess.Popen:
    tag = Path(sys.executable).with_name("tag")
    with log.open("ab") as out:
        return subprocess.Popen([str(tag), "bot", "--transport", "rabbitmq"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _uploads(fake: FakeTelegram) -> Counter[str]:
    """Accepted uploads per request id."""
    counts: Counter[str] = Counter()
    for call in fake.calls:
        if call.method in UPLOADS and call.status == 200:
            buttons = json.loads(call.params["reply_markup"])["inline_keyboard"][0]
            counts[buttons[0]["callback_data"].removeprefix("again:")] += 1
    return counts


def _redeliver(node, queue: str, *requests: SoundRequest) -> None:
    """Publish a second answer to requests already answered (and delivered, or stored for delivery)."""
    connection, channel = amqp_channel(node)
    try:
        for request in requests:
            again = SoundResponse(request_id=request.request_id, ok=True, prompt=request.prompt, duration=1.0,
                                  backend="tone", seed=request.seed, context=request.context,
                                  audio=Audio(np.zeros((1, 16000), np.float32), 16000))
            channel.basic_publish("", queue, encode(again), pika.BasicProperties(delivery_mode=2, type="response"))
    finally:
        connection.close()


def _stored(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT count(*) FROM answers").fetchone()[0])


def _wait(predicate, what: str, log: Path, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"{what} did not happen in {timeout:g} s; bot log:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


@pytest.mark.broker
def test_every_clip_once_across_kill_9_and_a_broker_restart(rabbitmq_node, tmp_path):
    plugins.register_plugin(tone, name="tag_testkit.tone")  # for the worker in this process
    env = broker_env(rabbitmq_node)
    store, log = tmp_path / "bot.sqlite3", tmp_path / "bot.log"
    worker = ThreadWorker(env, ["tone"])
    transport = build_transport(broker_config(env), "rabbitmq")
    submitter = transport.client(name="telegram")  # submits as the bot would; never consumes its answers
    bot = None
    with FakeTelegram() as fake:
        bot_env = {k: v for k, v in os.environ.items() if k not in ("TAG_PLUGIN_MODULES",)}
        bot_env.update(env, TAG_PLUGINS="rabbitmq,telegram", TAG_TELEGRAM_TOKEN=fake.token,
                       TAG_TELEGRAM_API_URL=fake.base_url, TAG_TELEGRAM_POLL_TIMEOUT="1",
                       TAG_TELEGRAM_DELIVERY_THREADS="2", TAG_TELEGRAM_STORE=str(store),
                       NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")

        def ask(chat: int) -> SoundRequest:
            request = SoundRequest(prompt=f"clip for chat {chat}", duration=1.0, backend="tone", seed=chat,
                                   context=reply_context(chat, chat), client="telegram")
            submitter.submit(request)
            return request

        try:
            bot = _bot(bot_env, log)
            _wait(lambda: fake.polls > 0, "the bot polling", log)
            first = ask(1)
            _wait(lambda: _uploads(fake)[first.request_id] == 1, "the first clip", log)
            fake.hold(*UPLOADS)
            held = [ask(chat) for chat in range(2, 8)]
            fake.wait_held(2, timeout=60)  # one upload per lane is on the wire, the other answers wait behind
            _wait(lambda: _stored(store) == 7, "every answer in the store", log)
            bot.send_signal(signal.SIGKILL)
            bot.wait()
            fake.release()  # the bot is dead: those uploads never complete
            late = [ask(chat) for chat in (8, 9)]  # answered while the bot is down: they wait in the broker
            reply_queue = submitter.reply_queue
            # (2 or more: an answer the bot committed but could not acknowledge before the kill is back too)
            _wait(lambda: queue_depth(rabbitmq_node, reply_queue)[0] >= 2, "two answers in the broker", log)
            rabbitmq_node.stop()
            rabbitmq_node.start()
            # the node answers before it has loaded every durable queue: wait for them, never assume
            _wait(lambda: queue_depth(rabbitmq_node, reply_queue)[0] >= 2, "the answers back after the restart", log)

            bot = _bot(bot_env, log)
            wanted = [first, *held, *late]
            _wait(lambda: all(_uploads(fake)[r.request_id] for r in wanted), "every clip delivered", log)
            _redeliver(rabbitmq_node, reply_queue, first, held[0])  # as a broker does after a worker crash
            sentinel = ask(10)  # answered after the duplicates, through the same consumer
            _wait(lambda: _uploads(fake)[sentinel.request_id] == 1, "the clip after the duplicates", log)
            stop_process(bot)  # a clean stop: whatever was still queued would have gone out by now
            assert bot.returncode == 0, log.read_text()[-3000:]
            counts = _uploads(fake)
            assert {r.request_id: counts[r.request_id] for r in (*wanted, sentinel)} == \
                {r.request_id: 1 for r in (*wanted, sentinel)}
            assert sum(counts.values()) == 10
            assert "sending the answer to request" in log.read_text()  # the held uploads were resent
        finally:
            if bot is not None:
                stop_process(bot)
            fake.release()
            submitter.close()
            transport.close()
            worker.stop()
            if rabbitmq_node.accepting():
                delete_queues(rabbitmq_node, env)


def test_choices_and_recipes_survive_a_restart(start_bot, monkeypatch):
    presets: list[str] = []
    monkeypatch.setattr(PresetToneBackend, "presets", presets)
    backends = ("tone", "preset_tone")
    first = start_bot(backends=backends)  # new users start on tone
    first.fake.push_text(5, "/backend")
    menu = first.wait_reply(5, "Choose the sound generator")
    first.press(5, menu, next(label for label in first.buttons(menu) if "preset_tone" in label))
    first.fake.wait_method("editMessageText", 5, text="Generator set to preset_tone")
    first.fake.push_text(5, "/settings")
    first.press(5, first.wait_reply(5, "Settings of preset_tone"), "preset: fast")
    first.fake.wait_method("editMessageText", 5, text="preset: fast (your choice)")
    first.ask(5, "rain on a tin roof")
    clip = first.audio_for(5)[0]
    first.stop()

    second = start_bot(backends=backends)  # the same store, as after a restart
    second.fake.push_text(5, "/settings")
    menu = second.fake.wait_method("sendMessage", 5, count=2, text="Settings of preset_tone")[1]  # [0]: the first bot's
    assert "preset: fast (your choice)" in menu.params["text"]
    second.fake.push_callback(5, clip, second.buttons(clip)["🔁 Again"])
    again = second.audio_for(5, 2)[1]
    assert again.params["caption"] == clip.params["caption"]  # same prompt, backend and seed
    second.fake.push_callback(5, clip, second.buttons(clip)["🎲 Variation"])
    variation = second.audio_for(5, 3)[2]
    assert "rain on a tin roof" in variation.params["caption"] and "preset_tone" in variation.params["caption"]
    assert presets == ["fast", "fast", "fast"]  # each repeat with the options the clip was made with


def _answer(request_id: str, chat: int) -> SoundResponse:
    return SoundResponse(request_id, True, audio=Audio(np.zeros((1, 16000), np.float32), 16000), prompt="hum",
                         duration=1.0, backend="tone", seed=1, context=reply_context(chat, chat))


def test_refused_and_crash_looping_answers_are_not_tried_again(start_bot, tmp_path):
    store = BotStore(tmp_path / "bot.sqlite3")  # the file the bots of this test use
    store.add_answer(_answer("crashes-the-bot", 90), 90, 90)
    for _ in range(MAX_ATTEMPTS):  # five starts died while delivering it
        store.mark_sending("crashes-the-bot")
    store.add_answer(_answer("left-over", 91), 91, 91)
    store.close()
    first = start_bot()
    first.audio_for(91)  # an answer left in the store goes out at start
    first.fake.block(92)
    first.frontend.delivery.on_event(_answer("to-a-blocked-chat", 92))
    refused = first.frontend.delivery.store.answer
    end = time.monotonic() + 10
    while getattr(refused("to-a-blocked-chat"), "state", "") != "refused":  # the 403 marks it
        assert time.monotonic() < end, "the answer to a blocked chat was never marked refused"
        time.sleep(0.02)
    first.stop()
    second = start_bot()
    second.fake.push_text(93, "/help")
    second.wait_reply(93, "/cancel")  # the second bot is up and has delivered what it had
    store = BotStore(tmp_path / "bot.sqlite3")
    states = {rid: store.answer(rid) for rid in ("crashes-the-bot", "left-over", "to-a-blocked-chat")}
    assert {rid: answer.state for rid, answer in states.items() if answer} == {
        "crashes-the-bot": "refused", "left-over": "delivered", "to-a-blocked-chat": "refused"}
    assert not second.fake.calls_of("sendVoice", 90) and len(second.fake.calls_of("sendVoice", 91)) == 1
    store.close()

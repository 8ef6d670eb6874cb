"""The same conversation over a real RabbitMQ broker, including a bot restart while a sound is being made."""
from __future__ import annotations

import pytest

from tag_testkit.broker import ThreadWorker, broker_config, broker_env, delete_queues, rabbitmq_node  # noqa: F401
from tagcore.runtime import build_transport

pytestmark = pytest.mark.broker


@pytest.fixture
def bot_env(rabbitmq_node, fake_telegram):
    values = broker_env(rabbitmq_node)
    values.update({"TAG_TELEGRAM_TOKEN": fake_telegram.token, "TAG_DEFAULT_BACKEND": "tone"})
    yield values
    if rabbitmq_node.accepting():
        delete_queues(rabbitmq_node, values, backends=("tone",))


def _bot(start_bot, env, **settings):
    config = broker_config(env)
    transport = build_transport(config, "rabbitmq")
    return start_bot(settings, backends=("tone",), transport=transport, config=config), transport


def test_conversation_over_rabbitmq(start_bot, bot_env):
    worker = ThreadWorker(bot_env, ["tone"])
    try:
        bot, transport = _bot(start_bot, bot_env)
        bot.ask(1, "thunder over a broker")
        voice = bot.audio_for(1, timeout=30)[0]
        assert "thunder over a broker" in voice.params["caption"] and "tone" in voice.params["caption"]
        bot.stop()
        transport.close()
    finally:
        worker.stop()


def test_answer_survives_a_bot_restart(start_bot, bot_env):
    worker = ThreadWorker(bot_env, ["tone"])
    try:
        first, transport = _bot(start_bot, bot_env, options={"tone": {"delay": 3.0}})
        first.ask(2, "made while the bot was down")
        first.fake.wait_method("sendMessage", 2, text="Queued")
        first.stop()  # the bot goes away with the sound still being made
        transport.close()
        second, transport2 = _bot(start_bot, bot_env)
        voice = second.audio_for(2, timeout=30)[0]
        assert "made while the bot was down" in voice.params["caption"]
        second.stop()
        transport2.close()
    finally:
        worker.stop()


def test_cancel_during_generation_over_rabbitmq(start_bot, bot_env):
    worker = ThreadWorker(bot_env, ["tone"])
    try:
        bot, transport = _bot(start_bot, bot_env, options={"tone": {"delay": 100.0}})
        bot.ask(3, "endless hum")
        bot.fake.wait_for(lambda c: c.chat_id == 3 and "Generating" in c.params.get("text", ""), timeout=30)
        bot.fake.push_text(3, "/cancel")
        bot.wait_reply(3, "Stopping your sound")
        stopped = bot.fake.wait_for(lambda c: c.chat_id == 3 and "Cancelled “endless hum”" in c.params.get("text", ""),
                                    timeout=50)
        assert stopped and not bot.fake.calls_of("sendVoice", 3)
        bot.prompt(3, "next one")  # the slot is free again
        bot.fake.push_text(3, "/cancel")
        bot.wait_reply(3, "forgotten")
        bot.fake.push_text(3, "/cancel")
        bot.wait_reply(3, "nothing to cancel")
        bot.stop()
        transport.close()
    finally:
        worker.stop()

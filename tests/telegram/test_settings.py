"""/settings: a chat user picks a generator's choice options (Make-An-Audio's speed `preset`, here the test
backend's), sees the current values, and their next requests carry the pick to the worker."""
from __future__ import annotations

import pytest

from tag_telegram.chat_options import DEFAULT, OPERATOR, PINNED, YOURS, request_options, settings_of, stale_picks
from tag_telegram.settings import load_settings
from tag_testkit.tone import PresetToneBackend, ToneBackend
from tagcore.config import Config
from tagcore.errors import ConfigError
from tagcore.options import Option
from tagcore.spec import BackendSpec

BACKENDS = ("tone", "preset_tone")


@pytest.fixture
def presets(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The presets preset_tone generated with, in order (this test's only)."""
    seen: list[str] = []
    monkeypatch.setattr(PresetToneBackend, "presets", seen)
    return seen


def open_settings(bot, user: int):
    """Send /settings; return the bot's answer (the menu, or why there is none)."""
    before = len(bot.fake.calls_of("sendMessage", user))
    bot.fake.push_text(user, "/settings")
    return bot.fake.wait_for(lambda c: c.method == "sendMessage" and c.chat_id == user, before + 1)[before]


def test_a_user_picks_fast_and_the_next_request_carries_it(start_bot, presets):
    bot = start_bot({"backend": "preset_tone"}, backends=BACKENDS)
    fake = bot.fake
    commands = fake.wait_method("setMyCommands")[0].params["commands"]
    assert '"settings"' in commands

    menu = open_settings(bot, 1)
    assert "preset: quality (default)" in menu.params["text"]
    assert "fewer steps" in menu.params["text"]  # the option's help, from the spec
    assert bot.buttons(menu) == {"✅ preset: quality": "opt:0:0:preset_tone", "preset: fast": "opt:0:1:preset_tone"}

    bot.press(1, menu, "preset: fast")
    edited = fake.wait_method("editMessageText", 1, text="preset: fast (your choice)")[-1]
    assert set(bot.buttons(edited)) == {"preset: quality", "✅ preset: fast"}  # the menu stays, the tick moves

    question = bot.prompt(1, "rain on a tin roof")
    assert "⚙️ preset: fast" in bot.buttons(question)  # the current choice, next to the durations
    bot.press(1, question, "5 s")
    first = bot.audio_for(1)[0]
    assert presets == ["fast"]

    # /settings shows the pick; switching back to quality applies to new requests...
    menu = open_settings(bot, 1)
    assert "preset: fast (your choice)" in menu.params["text"]
    bot.press(1, menu, "preset: quality")
    fake.wait_method("editMessageText", 1, text="preset: quality (your choice)")
    bot.ask(1, "wind")
    bot.audio_for(1, 2)
    assert presets == ["fast", "quality"]
    # ... while "Again" repeats a clip with the options it was made with.
    fake.push_callback(1, first, bot.buttons(first)["🔁 Again"])
    bot.audio_for(1, 3)
    assert presets == ["fast", "quality", "fast"]

    # Picks are per user: another user still gets the default.
    bot.ask(2, "birds")
    bot.audio_for(2)
    assert presets[-1] == "quality"


def test_the_duration_keyboard_opens_the_menu(start_bot, presets):
    bot = start_bot({"backend": "preset_tone"}, backends=BACKENDS)
    question = bot.prompt(3, "a bell")
    bot.press(3, question, "⚙️ preset: quality")
    menu = bot.wait_reply(3, "Settings of preset_tone")
    bot.press(3, menu, "preset: fast")
    bot.fake.wait_method("editMessageText", 3, text="preset: fast (your choice)")
    bot.press(3, question, "5 s")  # the prompt waited meanwhile
    bot.audio_for(3)
    assert presets == ["fast"]


def test_switching_backend_shows_that_backends_settings(start_bot, presets):
    bot = start_bot(backends=BACKENDS)
    fake = bot.fake
    assert "tone has no settings to choose" in open_settings(bot, 4).params["text"]

    fake.push_text(4, "/backend")
    chooser = bot.wait_reply(4, "Choose the sound generator")
    bot.press(4, chooser, "preset_tone")
    shown = fake.wait_method("editMessageText", 4, text="Generator set to preset_tone.")[-1]
    assert "preset: quality (default)" in shown.params["text"]
    bot.press(4, shown, "preset: fast")
    shown = fake.wait_method("editMessageText", 4, text="preset: fast (your choice)")[-1]

    fake.push_text(4, "/backend")
    chooser = bot.wait_reply(4, "Choose the sound generator (current: preset_tone)")
    bot.press(4, chooser, "tone")
    back = fake.wait_method("editMessageText", 4, text="Generator set to tone.")[-1]
    assert "reply_markup" not in back.params  # tone has nothing to choose
    # An old menu of another generator still changes that generator only, not the current one.
    bot.press(4, shown, "preset: quality")
    fake.wait_method("editMessageText", 4, text="preset: quality (your choice)")
    assert "tone has no settings" in open_settings(bot, 4).params["text"]
    bot.ask(4, "beep")
    voice = bot.audio_for(4)[0]
    assert "tone" in voice.params["caption"] and presets == []


def test_a_users_pick_overrides_the_operator_default(start_bot, presets):
    bot = start_bot({"backend": "preset_tone", "options": {"preset_tone": {"preset": "fast", "delay": 0.1}}},
                    backends=BACKENDS)
    menu = open_settings(bot, 5)
    assert "preset: fast (this bot's default)" in menu.params["text"]
    bot.ask(5, "first")
    bot.audio_for(5)
    bot.press(5, menu, "preset: quality")
    bot.fake.wait_method("editMessageText", 5, text="preset: quality (your choice)")
    bot.ask(5, "second")
    bot.audio_for(5, 2)
    assert presets == ["fast", "quality"]


def test_a_pinned_option_is_shown_fixed_and_never_taken_from_the_user(start_bot, presets):
    bot = start_bot({"backend": "preset_tone", "options": {"preset_tone": {"preset": "fast"}},
                     "pinned": ["preset_tone.preset"]}, backends=BACKENDS)
    menu = open_settings(bot, 6)
    assert "preset: fast (fixed by the bot's operator)" in menu.params["text"]
    assert "reply_markup" not in menu.params
    question = bot.prompt(6, "drums")
    assert set(bot.buttons(question)) == {"5 s", "10 s", "20 s", "✏️ Custom"}
    # A button of a menu shown before the operator pinned it is refused, with the reason.
    bot.fake.push_callback(6, menu, "opt:0:0:preset_tone")
    alert = bot.fake.wait_for(lambda c: c.method == "answerCallbackQuery" and c.params.get("text"))[0]
    assert "fixed preset" in alert.params["text"]
    bot.press(6, question, "5 s")
    bot.audio_for(6)
    assert presets == ["fast"]


def test_an_invalid_operator_value_is_flagged_and_the_user_can_fix_it(start_bot, presets):
    bot = start_bot({"backend": "preset_tone", "options": {"preset_tone": {"preset": "turbo"}}}, backends=BACKENDS)
    bot.fake.push_text(7, "hail")
    bot.wait_reply(7, "Option preset: 'turbo' is not one of quality, fast.")
    menu = open_settings(bot, 7)
    assert "preset: turbo (this bot's default) ⚠️ not one of quality, fast: tap one below" in menu.params["text"]
    assert set(bot.buttons(menu)) == {"preset: quality", "preset: fast"}  # nothing ticked
    bot.press(7, menu, "preset: fast")
    bot.fake.wait_method("editMessageText", 7, text="preset: fast (your choice)")
    bot.ask(7, "hail")
    bot.audio_for(7)
    assert presets == ["fast"]


def test_a_pick_the_backend_no_longer_offers_is_dropped_with_a_word(start_bot, presets):
    bot = start_bot({"backend": "preset_tone"}, backends=BACKENDS)
    # As if a worker had announced another spec since the user chose: "turbo" is not a choice any more.
    bot.frontend.conversation.sessions.pick(8, 8, "preset_tone", "preset", "turbo")
    bot.fake.push_text(8, "thunder")
    bot.wait_reply(8, "preset_tone no longer offers your choice of preset")
    question = bot.fake.wait_method("sendMessage", 8, text="thunder")[-1]
    bot.press(8, question, "5 s")
    bot.audio_for(8)
    assert presets == ["quality"]
    assert "preset: quality (default)" in open_settings(bot, 8).params["text"]


# --- the logic behind the menu, on specs built by hand ---------------------------------------------------------
SPEC = BackendSpec.from_attributes(PresetToneBackend)


def test_settings_of_says_where_each_value_comes_from():
    assert [(s.value, s.source) for s in settings_of(SPEC, {}, frozenset(), {})] == [("quality", DEFAULT)]
    assert [(s.value, s.source) for s in settings_of(SPEC, {"preset": "fast"}, frozenset(), {})] == [("fast", OPERATOR)]
    assert [(s.value, s.source) for s in settings_of(SPEC, {"preset": "fast"}, frozenset(), {"preset": "quality"})] \
        == [("quality", YOURS)]
    pinned = settings_of(SPEC, {}, frozenset({"preset"}), {"preset": "fast"})
    assert [(s.value, s.source, s.changeable) for s in pinned] == [("quality", PINNED, False)]
    # Only request options with choices are offered: not the worker's `device` choice, not numbers.
    assert settings_of(BackendSpec.from_attributes(ToneBackend), {}, frozenset(), {}) == []


def test_request_options_put_valid_picks_over_the_operators_and_drop_stale_ones():
    aliased = BackendSpec.from_attributes(PresetToneBackend)
    aliased = type(aliased)(**{**aliased.__dict__, "options": aliased.options[:-1] + (
        Option("preset", "choice", "quality", "", choices=("quality", "fast"), aliases=("speed",)),)})
    assert request_options(aliased, {"speed": "quality", "delay": 1}, frozenset(), {"preset": "fast"}) == \
        {"preset": "fast", "delay": 1}
    assert request_options(SPEC, {"preset": "fast"}, frozenset({"preset"}), {"preset": "quality"}) == \
        {"preset": "fast"}
    assert stale_picks(SPEC, frozenset(), {"preset": "turbo", "gone": "x", "preset2": "y"}) == \
        ["preset", "gone", "preset2"]
    assert stale_picks(SPEC, frozenset({"preset"}), {"preset": "fast"}) == ["preset"]
    assert request_options(SPEC, {}, frozenset(), {"preset": "turbo"}) == {}


def test_pinned_setting_parsing():
    config = Config(sections={"telegram": {"token": "1:x"}})
    settings = load_settings(config, {"pinned": "make_an_audio.preset, make_an_audio.sampler;tone.amplitude"})
    assert settings.pinned == {"make_an_audio": frozenset({"preset", "sampler"}), "tone": frozenset({"amplitude"})}
    assert load_settings(config, {"pinned": ["a.b.c"]}).pinned == {"a.b": frozenset({"c"})}
    with pytest.raises(ConfigError, match="BACKEND.OPTION"):
        load_settings(config, {"pinned": ["preset"]})


def test_make_an_audio_preset_is_the_first_setting_offered():
    """The real backend's spec, as a worker announces it (JSON), puts the speed preset first: the bot names no
    model."""
    backend = pytest.importorskip("tag_make_an_audio.backend", reason="the make_an_audio plugin is not installed")
    from tag_telegram import settings_menu, texts

    spec = BackendSpec.from_json(BackendSpec.from_attributes(backend.MakeAnAudioBackend).to_json())
    current = settings_of(spec, {}, frozenset(), {"preset": "fast"})
    assert [(s.option.name, s.value) for s in current][0] == ("preset", "fast")
    rows = settings_menu.keyboard(spec.name, current).keyboard
    assert [b.text for b in rows[0]] == ["preset: quality", "✅ preset: fast"]
    assert "DPM++ 25" in texts.settings_menu(spec.name, current)
    assert request_options(spec, {"guidance": 2.0}, frozenset(), {"preset": "fast"}) == {"guidance": 2.0,
                                                                                          "preset": "fast"}

"""The /settings keyboard: one row of buttons per choice option, the current value ticked.

A button's data names the backend as well as the option and choice (by index: Telegram allows 64 bytes), so a
press on an old menu can never change the settings of a generator the user has switched to since.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from telebot import types

from tagcore.options import Option
from tagcore.spec import BackendSpec

from . import texts
from .chat_options import Setting, choice_options

PICK = "opt"
"""Callback kind of a value button."""
OPEN = "cfg"
"""Callback kind of the button that opens the menu (on the duration keyboard)."""
BUTTONS_PER_ROW = 3


CALLBACK_BYTES = 64
"""Telegram's limit on a button's callback data."""


def button_data(text: str) -> str:
    """`text` cut to what a button may carry (a long backend name is cut; handlers find it by comparing cuts)."""
    return text.encode()[:CALLBACK_BYTES].decode(errors="ignore")


def named_by(sent: str, names: Iterable[str], data_of: Callable[[str], str]) -> str | None:
    """The name whose button carried `sent`: compared as cut, so a name too long for the data is found too."""
    return next((name for name in names if data_of(name) == sent), None)


def _pick_data(backend: str, option: int, choice: int) -> str:
    return button_data(f"{PICK}:{option}:{choice}:{backend}")


def keyboard(backend: str, settings: list[Setting]) -> types.InlineKeyboardMarkup | None:
    """Value buttons for the options a user may change; None when there are none."""
    markup = types.InlineKeyboardMarkup()
    changeable = False
    for index, setting in enumerate(settings):
        if not setting.changeable:
            continue
        changeable = True
        buttons = [types.InlineKeyboardButton(texts.choice_label(setting.option.name, choice, choice == setting.value),
                                              callback_data=_pick_data(backend, index, number))
                   for number, choice in enumerate(setting.option.choices)]
        for start in range(0, len(buttons), BUTTONS_PER_ROW):
            markup.row(*buttons[start:start + BUTTONS_PER_ROW])
    return markup if changeable else None


def open_button(settings: list[Setting]) -> types.InlineKeyboardButton | None:
    """The duration keyboard's "⚙️ preset: quality" button, opening the menu; None when nothing can be changed."""
    shown = [s for s in settings if s.changeable]
    if not shown:
        return None
    return types.InlineKeyboardButton(texts.settings_button([(s.option.name, s.value) for s in shown]),
                                      callback_data=OPEN)


def parse_pick(rest: str, specs: Mapping[str, BackendSpec]) -> tuple[str, Option, str] | None:
    """(backend, option, value) of a value button's data after "opt:", or None when it no longer applies."""
    option_index, _, rest = rest.partition(":")
    choice_index, _, backend_part = rest.partition(":")
    if not (option_index.isdigit() and choice_index.isdigit()):
        return None
    sent = f"{PICK}:{option_index}:{choice_index}:{backend_part}"
    backend = named_by(sent, specs, lambda name: _pick_data(name, int(option_index), int(choice_index)))
    if backend is None:
        return None
    options = choice_options(specs[backend])
    if int(option_index) >= len(options) or int(choice_index) >= len(options[int(option_index)].choices):
        return None
    option = options[int(option_index)]
    return backend, option, option.choices[int(choice_index)]

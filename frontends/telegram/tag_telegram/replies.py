"""Sending the bot's own messages: replies, and settling a keyboard message once it has been answered."""
from __future__ import annotations

import logging
from typing import Any

from telebot import TeleBot, types
from telebot.apihelper import ApiException

from .sender import Sender

log = logging.getLogger("tag_telegram")


class Replies:
    """The bot's outgoing messages, through the Sender (flood control, blocked chats, token redaction)."""

    def __init__(self, bot: TeleBot, sender: Sender) -> None:
        self.bot = bot
        self.sender = sender

    def send(self, chat_id: int, text: str, markup: types.InlineKeyboardMarkup | None = None) -> Any:
        return self.sender.call(chat_id, "sendMessage", self.bot.send_message, chat_id, text, reply_markup=markup)

    def settle(self, call: types.CallbackQuery, text: str, markup: types.InlineKeyboardMarkup | None = None) -> None:
        """Replace a keyboard message's text and buttons (without `markup` the buttons go, so they cannot be
        pressed twice)."""
        message = call.message
        if message is None:  # too old for Telegram to say which message it was: nothing to settle
            return
        try:
            self.sender.call(message.chat.id, "editMessageText", self.bot.edit_message_text, text,
                             message.chat.id, message.message_id, reply_markup=markup)
        except ApiException as exc:
            log.debug("could not settle keyboard message: %s", getattr(exc, "description", exc))

    def answer_callback(self, call: types.CallbackQuery, notice: str | None) -> None:
        """Stop the button's spinner, with `notice` as an alert when there is one."""
        chat_id = call.message.chat.id if call.message else call.from_user.id
        try:
            self.sender.call(chat_id, "answerCallbackQuery", self.bot.answer_callback_query, call.id,
                             text=notice, show_alert=bool(notice))
        except ApiException as exc:  # too late to answer (over 15 min): harmless
            log.debug("answerCallbackQuery failed: %s", getattr(exc, "description", exc))

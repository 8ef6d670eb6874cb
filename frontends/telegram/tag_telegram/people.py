"""Who asked and where to answer: the one way a (user, chat) pair travels through the bot."""
from __future__ import annotations

from typing import NamedTuple

from telebot import types


class ChatUser(NamedTuple):
    """A user in a chat, always user first (a private chat's id equals its user's, so swapped ids would go
    unnoticed in private chats and misroute in groups)."""

    user_id: int
    chat_id: int

    @classmethod
    def of(cls, message: types.Message) -> ChatUser:
        if message.from_user is None:  # channel posts have no sender; the bot registers no handler for them
            raise ValueError(f"a message without a sender in chat {message.chat.id}")
        return cls(message.from_user.id, message.chat.id)

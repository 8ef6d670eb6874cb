"""Songs: which offered backends take lyrics, and how a chat message splits into a description and lyrics.

The bot knows no model: a backend takes lyrics when its spec has a text request option flagged `multiline` (a long
text over several lines). A chat user gives them the way a message is naturally written: `/song` and the song's
description on the first line, the lyrics on the lines below; or, with a backend that takes lyrics, a prompt whose
second paragraph (after an empty line) is the lyrics.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from tagcore.spec import BackendSpec

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


def lyrics_option(spec: BackendSpec) -> str | None:
    """The name of `spec`'s lyrics option (its first multiline text request option), or None."""
    for option in spec.request_options:
        if option.multiline and option.type == "str":
            return option.name
    return None


def singers(specs: Mapping[str, BackendSpec]) -> list[str]:
    """The backends among `specs` that take lyrics, in offered order."""
    return [name for name, spec in specs.items() if lyrics_option(spec) is not None]


def song_backend(current: str, specs: Mapping[str, BackendSpec]) -> str | None:
    """The backend a /song goes to: the user's own when it takes lyrics, else the first offered one that does."""
    if current in specs and lyrics_option(specs[current]) is not None:
        return current
    capable = singers(specs)
    return capable[0] if capable else None


def split_command(text: str) -> tuple[str, str]:
    """A /song message as (description, lyrics): the first line after the command, and the lines below it."""
    head = text.strip().split("\n", 1)
    first = head[0].split(None, 1)  # "/song" or "/song@bot", then the description
    description = first[1].strip() if len(first) > 1 else ""
    lyrics = head[1].strip() if len(head) > 1 else ""
    return description, lyrics


def split_paragraphs(text: str) -> tuple[str, str]:
    """A prompt as (description, lyrics): its first paragraph, and what follows the first empty line."""
    parts = _PARAGRAPH_BREAK.split(text.strip(), maxsplit=1)
    return parts[0].strip(), (parts[1].strip() if len(parts) > 1 else "")

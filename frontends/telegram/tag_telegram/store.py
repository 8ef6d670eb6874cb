"""The bot's store: answers waiting for delivery, what was delivered, users' choices and the recipes of clips.

One SQLite file (WAL mode, `synchronous=FULL`), by default `$XDG_DATA_HOME/tag/telegram.sqlite3`, set with
`store` in `[telegram]`. It is what lets a bot be killed at any moment and deliver every clip exactly once:

1. The transport listener commits an answer (the encoded response and its chat) before it returns, so the broker
   acknowledgement comes after the commit. A crash before the commit: the broker redelivers the answer. A crash
   between commit and ack: the broker redelivers it too, and the store drops it (its request id is known).
2. A delivery lane marks the answer "sending" (counting attempts) right before the upload, and "delivered" with
   Telegram's message id (and the clip's recipe, in the same transaction) as soon as Telegram answered; a refusal
   for good (403 blocked, 400 chat not found...) is marked "refused" with its reason. After a restart every answer
   not delivered nor refused is sent again; one that was already sent (a message id is recorded) never is.
3. The one window the Bot API leaves open: sendVoice/sendAudio take no idempotency key and no call can ask
   whether a message exists, so a crash after Telegram stored the upload but before the store committed its
   message id (the time to read the HTTP answer and commit one row: about a millisecond) sends the clip again
   after the restart. A crash during the upload itself (the long part) is not in the window: Telegram acts only
   on a complete request. The restart logs each answer resent from the "sending" state, and gives up on one after
   MAX_ATTEMPTS starts (an answer that kills the bot each time must not keep it in a crash loop).

Delivered and refused answers keep only their row (the audio is dropped) so a late duplicate is still recognised;
rows older than KEEP_DAYS are deleted at start. One connection, guarded by a lock: every statement is short.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tagcore.audio_types import Audio
from tagcore.config import data_dir
from tagcore.errors import ConfigError
from tagcore.messages import SoundResponse, decode, encode

from .sessions import Recipe

log = logging.getLogger("tag_telegram")
SCHEMA_VERSION = 1
MAX_ATTEMPTS = 5
KEEP_DAYS = 7.0
OPEN_STATES = ("pending", "sending")

_SCHEMA = """
CREATE TABLE answers (
    request_id TEXT PRIMARY KEY,
    chat_id INTEGER NOT NULL,
    user_id INTEGER,
    body BLOB,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    message_id INTEGER,
    reason TEXT,
    received_at REAL NOT NULL,
    finished_at REAL
);
CREATE INDEX answers_open ON answers (state, received_at);
CREATE TABLE users (
    user_id INTEGER PRIMARY KEY,
    chat_id INTEGER NOT NULL,
    backend TEXT,
    picks TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE recipes (
    key TEXT PRIMARY KEY,
    prompt TEXT NOT NULL,
    duration REAL NOT NULL,
    backend TEXT NOT NULL,
    seed INTEGER,
    options TEXT,
    audio BLOB,
    audio_rate INTEGER,
    audio_channels INTEGER,
    saved_at REAL NOT NULL
);
CREATE INDEX recipes_age ON recipes (saved_at);
"""


def default_store_path(environ: Mapping[str, str] | None = None) -> Path:
    """`telegram.sqlite3` in TAG's data folder (~/.local/share/tag/...): data, not cache, and out of /tmp."""
    return data_dir(environ) / "telegram.sqlite3"


@dataclass(frozen=True)
class StoredAnswer:
    """An answer as the store holds it (`response` is None once it was delivered or refused)."""

    request_id: str
    chat_id: int
    user_id: int | None
    state: str
    attempts: int
    message_id: int | None
    response: SoundResponse | None


class BotStore:
    """The bot's durable state in one SQLite file (":memory:" keeps it in memory, for embedding and tests)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"telegram.store: cannot create the folder of {self.path}: {exc}") from None
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.Error as exc:
            raise ConfigError(f"telegram.store: cannot open the bot's store {self.path}: {exc}") from None
        self._lock = threading.Lock()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ConfigError(f"telegram.store: {self.path} has schema version {version}, newer than this bot's "
                              f"{SCHEMA_VERSION}: upgrade TAG or point `store` at another file")
        if version < 1:
            self._db.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- answers ---------------------------------------------------------------------------------------
    def add_answer(self, response: SoundResponse, chat_id: int, user_id: int | None) -> bool:
        """Commit an answer for delivery; False when its request id is already known (a redelivered duplicate)."""
        body = encode(response)
        with self._transaction() as db:
            cursor = db.execute("INSERT OR IGNORE INTO answers (request_id, chat_id, user_id, body, received_at) "
                                "VALUES (?, ?, ?, ?, ?)", (response.request_id, chat_id, user_id, body, time.time()))
            return cursor.rowcount == 1

    def answer(self, request_id: str) -> StoredAnswer | None:
        rows = self._query("SELECT chat_id, user_id, state, attempts, message_id, body FROM answers "
                           "WHERE request_id = ?", (request_id,))
        if not rows:
            return None
        chat_id, user_id, state, attempts, message_id, body = rows[0]
        response = decode(body) if body is not None and state in OPEN_STATES else None
        assert response is None or isinstance(response, SoundResponse)
        return StoredAnswer(request_id, chat_id, user_id, state, attempts, message_id, response)

    def open_answers(self) -> list[tuple[str, int, str, int]]:
        """(request id, chat id, state, attempts) of every answer still to deliver, oldest first."""
        return [(r[0], r[1], r[2], r[3]) for r in self._query(
            "SELECT request_id, chat_id, state, attempts FROM answers WHERE state IN (?, ?) ORDER BY received_at",
            OPEN_STATES)]

    def mark_sending(self, request_id: str) -> None:
        """Committed right before the upload: a restart then knows the upload may have happened."""
        with self._transaction() as db:
            db.execute("UPDATE answers SET state = 'sending', attempts = attempts + 1 WHERE request_id = ?",
                       (request_id,))

    def retry_later(self, request_id: str) -> bool:
        """Back to "pending" after a failure that may pass; False when the store does not hold it open."""
        with self._transaction() as db:
            return db.execute("UPDATE answers SET state = 'pending' WHERE request_id = ? AND state IN (?, ?)",
                              (request_id, *OPEN_STATES)).rowcount == 1

    def mark_delivered(self, request_id: str, message_id: int | None,
                       recipe: tuple[str, Recipe, int] | None = None) -> None:
        """Telegram accepted the answer as `message_id`; also keep its recipe (key, recipe, how many to keep)."""
        with self._transaction() as db:
            db.execute("UPDATE answers SET state = 'delivered', message_id = ?, body = NULL, finished_at = ? "
                       "WHERE request_id = ?", (message_id, time.time(), request_id))
            if recipe is not None:
                self._put_recipe(db, *recipe)

    def mark_refused(self, request_id: str, reason: str) -> None:
        """Telegram refused the answer for good (blocked, chat gone, bad request): never try it again."""
        with self._transaction() as db:
            db.execute("UPDATE answers SET state = 'refused', reason = ?, body = NULL, finished_at = ? "
                       "WHERE request_id = ?", (reason[:500], time.time(), request_id))

    def prune(self, keep_days: float = KEEP_DAYS) -> int:
        """Delete finished answers older than `keep_days` (long after any broker would redeliver them)."""
        with self._transaction() as db:
            return db.execute("DELETE FROM answers WHERE finished_at IS NOT NULL AND finished_at < ?",
                              (time.time() - keep_days * 86400,)).rowcount

    # --- users -----------------------------------------------------------------------------------------
    def save_user(self, user_id: int, chat_id: int, backend: str | None, picks: dict[str, dict[str, str]]) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO users (user_id, chat_id, backend, picks) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (user_id) DO UPDATE SET chat_id = excluded.chat_id, backend = excluded.backend, "
                       "picks = excluded.picks", (user_id, chat_id, backend, json.dumps(picks)))

    def load_user(self, user_id: int) -> tuple[str | None, dict[str, dict[str, str]]] | None:
        """(backend, picks) saved for a user, or None for a user never seen."""
        rows = self._query("SELECT backend, picks FROM users WHERE user_id = ?", (user_id,))
        return (rows[0][0], json.loads(rows[0][1])) if rows else None

    # --- recipes ---------------------------------------------------------------------------------------
    def put_recipe(self, key: str, recipe: Recipe, keep: int) -> None:
        with self._transaction() as db:
            self._put_recipe(db, key, recipe, keep)

    @staticmethod
    def _put_recipe(db: sqlite3.Connection, key: str, recipe: Recipe, keep: int) -> None:
        audio = recipe.audio_prompt
        db.execute("INSERT OR REPLACE INTO recipes (key, prompt, duration, backend, seed, options, audio, audio_rate, "
                   "audio_channels, saved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (key, recipe.prompt, recipe.duration, recipe.backend, recipe.seed,
                    None if recipe.options is None else json.dumps(recipe.options),
                    None if audio is None else audio.samples.astype("<f4").tobytes(),
                    None if audio is None else audio.sample_rate, None if audio is None else audio.channels,
                    time.time()))
        db.execute("DELETE FROM recipes WHERE key NOT IN (SELECT key FROM recipes ORDER BY saved_at DESC LIMIT ?)",
                   (keep,))

    def recipe(self, key: str) -> Recipe | None:
        rows = self._query("SELECT prompt, duration, backend, seed, options, audio, audio_rate, audio_channels "
                           "FROM recipes WHERE key = ?", (key,))
        if not rows:
            return None
        prompt, duration, backend, seed, options, audio, rate, channels = rows[0]
        clip = None if audio is None else Audio(np.frombuffer(audio, "<f4").reshape(channels, -1), rate)
        return Recipe(prompt, duration, backend, seed, clip, None if options is None else json.loads(options))

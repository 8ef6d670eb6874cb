"""The HTTP frontend's own settings: `[http]` in the config file, `TAG_HTTP_*` in the environment, CLI flags.

Values may arrive as TOML types or as environment strings; they are coerced once at start-up (tagcore's
`settings_from_table`), with an error that names the setting instead of a stack trace from deep inside the server.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tagcore.audio import MAX_INPUT_BYTES
from tagcore.config import Secret, data_dir, settings_from_table
from tagcore.errors import ConfigError
from tagcore.fairness import MAX_BOOST

STORE_SCHEMES = ("sqlite:///", "postgresql://", "postgres://")
REPLY_QUEUE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class HttpSettings:
    """Limits and addresses of one HTTP server."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_json_bytes: int = 64 * 1024
    """Largest body accepted by every route except the audio-prompt upload."""
    max_upload_bytes: int = MAX_INPUT_BYTES + 256 * 1024
    """Largest multipart body (the audio prompt plus the form fields)."""
    rate_limit: float = 30.0
    """Generation requests per minute and client (0 turns rate limiting off)."""
    rate_burst: int = 10
    """Requests a client may send at once before the per-minute rate applies."""
    max_active_per_client: int = 4
    """Unfinished jobs one client may have at a time."""
    max_pending: int = 200
    """Unfinished jobs the whole server accepts before answering 503."""
    max_connections: int = 1000
    """Open connections (event streams included) before new ones get 503."""
    disconnect_grace: float = 5.0
    """Seconds after an event stream hangs up before its job is cancelled, if no client waits on it by then: a
    browser's EventSource reconnects by itself (the stream asks it to within half this time), on any replica."""
    result_ttl: float = 3600.0
    """Seconds a result stays downloadable; its files are deleted afterwards."""
    results_dir: str = ""
    """Where this server caches encoded results (the store keeps the audio itself); empty means a private
    temporary folder removed at shutdown."""
    store: Secret = Secret("")
    """The job store's URL: `sqlite:////absolute/path` or `postgresql://user:password@host/db` (replicas on
    several machines). Empty: `sqlite:///` + `default_store_path()`. A secret: the URL may hold a password."""
    reply_queue: str = "http"
    """Name of the deployment's one durable reply queue (`ResponseQueue.<name>` on RabbitMQ): every replica of
    one API consumes it, so an answer reaches whichever replica is alive, and waits there while none is. Give
    separate deployments on one broker separate names."""
    backends: tuple[str, ...] = ()
    """Backends offered (empty: every one workers announced, plus those installed here)."""
    default_duration: float = 5.0
    priority: int = 2
    """Rank of API requests among other sources' (0-2; tagcore.fairness): above the bot's default 0."""
    api_key: Secret = Secret("")
    """Clients must send it (X-API-Key or a bearer token) when set; empty leaves the API open."""
    forwarded_allow_ips: str = ""
    """Proxies trusted to set X-Forwarded-For (the client address used for rate limits). Empty: no proxy is
    trusted, so no local process can pose as a fresh client; set the proxy's address when behind one."""

    def store_url(self) -> str:
        return self.store.reveal() or f"sqlite:///{default_store_path()}"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "HttpSettings":
        """Coerce a mapping of raw values (TOML or environment strings); unknown keys are an error and None
        means "not given" (a CLI flag left out)."""
        settings = settings_from_table(cls, values, "http")
        settings.check()
        return settings

    def check(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"http port {self.port} is out of range")
        for name in ("max_json_bytes", "max_upload_bytes", "max_active_per_client", "max_pending", "rate_burst",
                     "max_connections"):
            if getattr(self, name) < 1:
                raise ConfigError(f"http setting {name} must be at least 1")
        if not 0 <= self.priority <= MAX_BOOST:
            raise ConfigError(f"http priority must be 0 to {MAX_BOOST}")
        if self.store and not self.store.reveal().startswith(STORE_SCHEMES):
            raise ConfigError("http store must be a URL starting with sqlite:/// or postgresql://")
        if not REPLY_QUEUE.match(self.reply_queue):
            raise ConfigError("http reply_queue must be 1-64 letters, digits, '_', '-' or '.'")
        if self.rate_limit < 0 or self.result_ttl <= 0 or self.default_duration <= 0:
            raise ConfigError("http rate_limit must be >= 0, result_ttl and default_duration > 0")
        if not 0 <= self.disconnect_grace <= 3600:
            raise ConfigError("http disconnect_grace must be 0 to 3600 seconds")


def default_store_path() -> Path:
    """The embedded job store: a SQLite file in TAG's data folder (not a temporary one: jobs outlive restarts)."""
    return data_dir() / "http" / "jobs.sqlite"

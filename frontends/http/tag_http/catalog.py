"""Which backends this server offers, and how they are described to API clients and the web page.

Validation needs the backend classes (their declarations, not their models), so the server must have the
backend plugins installed even when the workers run elsewhere; `[http] backends` narrows the list to the ones
the worker pool actually serves.
"""
from __future__ import annotations

import dataclasses

from tagcore import plugins
from tagcore.backend import Backend
from tagcore.config import Config
from tagcore.errors import ConfigError, InvalidRequest, UnknownBackend
from tagcore.validation import default_duration, longest_duration

from .schemas import BackendInfo, BackendList, DurationRange, OptionInfo


class Catalog:
    """The offered backend classes, resolved once at start-up."""

    def __init__(self, config: Config, offered: tuple[str, ...], default_duration: float) -> None:
        self.config = config
        self.registry = plugins.backends()
        self.default_duration = default_duration
        names = offered or tuple(self.registry.names())
        try:
            self.classes: dict[str, type[Backend]] = {self.registry.get(n).name: self.registry.get(n) for n in names}
        except UnknownBackend as exc:
            raise ConfigError(f"[http] backends: {exc.message}") from None
        default = config.default_backend
        if default in self.registry and self.registry.get(default).name in self.classes:
            self.default: str | None = self.registry.get(default).name
        else:
            self.default = next(iter(self.classes)) if len(self.classes) == 1 else None

    def resolve(self, name: str | None) -> type[Backend]:
        """The backend class for a request's backend name or alias (or the default)."""
        if not name:
            if self.default is None:
                raise InvalidRequest(f"name a backend (available: {', '.join(self.classes) or 'none'})")
            return self.classes[self.default]
        cls = self.registry.get(name) if name in self.registry else None
        if cls is None or cls.name not in self.classes:
            raise UnknownBackend(f"unknown backend {name!r} (available: {', '.join(self.classes) or 'none'})")
        return cls

    def longest(self, cls: type[Backend]) -> float:
        return longest_duration(cls, self.config)

    def duration_for(self, cls: type[Backend]) -> float:
        """The duration used when a request gives none (the server default, or for speech the longest allowed)."""
        return default_duration(cls, self.config, self.default_duration)

    def describe(self) -> BackendList:
        return BackendList(default=self.default, backends=[self._info(cls) for cls in self.classes.values()])

    def _info(self, cls: type[Backend]) -> BackendInfo:
        return BackendInfo(
            name=cls.name,
            aliases=list(cls.aliases),
            description=cls.description,
            sample_rate=cls.sample_rate,
            durations=DurationRange(min=cls.min_duration, max=self.longest(cls), native_max=cls.native_max_duration,
                                    default=self.duration_for(cls)),
            capabilities=dataclasses.asdict(cls.capabilities),
            variable_length=cls.variable_length,
            options=[OptionInfo(name=o.name, type=o.type, default=o.default, help=o.help, minimum=o.minimum,
                                maximum=o.maximum, choices=list(o.choices), aliases=list(o.aliases))
                     for o in cls.options if o.scope == "request"],
        )

"""Which backends this server offers, and how they are described to API clients and the web page.

Everything here reads backend specs from the transport's catalog (announced by workers, or built from backends
installed in this process), never backend classes, so the server runs without the backend packages (and without
torch). `[http] backends` narrows the list to the ones named.
"""
from __future__ import annotations

import dataclasses

from tagcore.catalog import BackendCatalog, CatalogEntry
from tagcore.config import Config
from tagcore.errors import InvalidRequest, UnknownBackend
from tagcore.spec import BackendSpec
from tagcore.validation import default_duration, longest_duration

from .schemas import BackendInfo, BackendList, DurationRange, OptionInfo


class Catalog:
    """The offered backends, read from the live catalog on every call (a worker started later shows up)."""

    def __init__(self, config: Config, backends: BackendCatalog, offered: tuple[str, ...],
                 default_duration: float) -> None:
        self.config = config
        self.backends = backends
        self.offered = offered
        self.default_duration = default_duration
        backends.warn_unknown(offered, "[http] backends")

    def entries(self) -> list[CatalogEntry]:
        entries = self.backends.entries()
        if not self.offered:
            return entries
        wanted = {self.backends.canonical(name) for name in self.offered}
        return [entry for entry in entries if entry.spec.name in wanted]

    def names(self) -> list[str]:
        return [entry.spec.name for entry in self.entries()]

    @property
    def default(self) -> str | None:
        names = self.names()
        preferred = self.backends.canonical(self.config.default_backend)
        if preferred in names:
            return preferred
        return names[0] if len(names) == 1 else None

    def resolve(self, name: str | None) -> BackendSpec:
        """The spec for a request's backend name or alias (or the default)."""
        names = self.names()
        if not name:
            default = self.default
            if default is None:
                raise InvalidRequest(f"name a backend (available: {', '.join(names) or 'none'})")
            name = default
        canonical = self.backends.canonical(name)
        if canonical not in names:
            raise UnknownBackend(f"unknown backend {name!r} (available: {', '.join(names) or 'none'})")
        return self.backends.resolve(canonical)

    def longest(self, spec: BackendSpec) -> float:
        return longest_duration(spec, self.config)

    def duration_for(self, spec: BackendSpec) -> float:
        """The duration used when a request gives none (the server default, or for speech the longest allowed)."""
        return default_duration(spec, self.config, self.default_duration)

    def describe(self) -> BackendList:
        return BackendList(default=self.default, backends=[self._info(entry) for entry in self.entries()])

    def _info(self, entry: CatalogEntry) -> BackendInfo:
        spec = entry.spec
        return BackendInfo(
            name=spec.name,
            aliases=list(spec.aliases),
            description=spec.description,
            sample_rate=spec.sample_rate,
            channels=spec.channels,
            available=entry.available,
            durations=DurationRange(min=spec.min_duration, max=self.longest(spec), native_max=spec.native_max_duration,
                                    default=self.duration_for(spec)),
            capabilities=dataclasses.asdict(spec.capabilities),
            variable_length=spec.variable_length,
            options=[OptionInfo(name=o.name, type=o.type, default=o.default, help=o.help, minimum=o.minimum,
                                maximum=o.maximum, choices=list(o.choices), aliases=list(o.aliases),
                                multiline=o.multiline)
                     for o in spec.request_options],
        )

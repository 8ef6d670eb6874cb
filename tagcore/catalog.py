"""The backends a client can ask for: specs announced by workers, followed live, plus those installed here.

A transport keeps one `BackendCatalog` up to date from its own threads (workers announcing specs, liveness
checks); frontends read it on every request, so a worker that starts later shows up without a restart. Aliases
are resolved here, once, on the client side: requests travel with the backend's own name.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import UnknownBackend
from .spec import BackendSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CatalogEntry:
    spec: BackendSpec
    available: bool
    """A live worker serves it now; requests for an unavailable backend wait in its queue."""
    announced: bool
    """The spec came from a worker (otherwise from a backend installed in this process)."""
    worker: str = ""
    workers: int = 0
    """How many live workers serve it now (the `tag_workers` metric)."""


class BackendCatalog:
    """Thread-safe map of backend name -> newest spec and whether a worker serves it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, CatalogEntry] = {}

    # --- updates (transport threads) ----------------------------------------------------------------------
    def add_installed(self, specs: Iterable[BackendSpec]) -> None:
        """Specs of backends installed here: used until a worker announces its own."""
        with self._lock:
            for spec in specs:
                if spec.name not in self._entries:
                    self._entries[spec.name] = CatalogEntry(spec, False, False)

    def announce(self, spec: BackendSpec, worker: str = "", *, warn: bool = True) -> None:
        """A worker's spec; the newest announcement wins, and (with `warn`) a different one is logged."""
        with self._lock:
            old = self._entries.get(spec.name)
            if warn and old is not None and old.announced and old.spec != spec:
                log.warning("workers disagree about backend %r: %s announced a different spec than %s; using the "
                            "newest (from %s)", spec.name, worker or "a worker", old.worker or "an earlier worker",
                            worker or "the newest worker")
            available = old.available if old is not None else False
            workers = old.workers if old is not None else 0
            self._entries[spec.name] = CatalogEntry(spec, available, True, worker, workers)

    def set_workers(self, name: str, count: int) -> None:
        """How many live workers serve `name` now; none makes it unavailable."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None and (entry.workers, entry.available) != (count, count > 0):
                self._entries[name] = CatalogEntry(entry.spec, count > 0, entry.announced, entry.worker, count)
    # --- reads (frontends) --------------------------------------------------------------------------------
    def entries(self) -> list[CatalogEntry]:
        with self._lock:
            return [self._entries[name] for name in sorted(self._entries)]

    def specs(self) -> list[BackendSpec]:
        return [entry.spec for entry in self.entries()]

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._entries)

    def canonical(self, name: str) -> str:
        """The backend's own name for `name` (itself or an alias); an unknown name is returned unchanged."""
        with self._lock:
            if name in self._entries:
                return name
            for entry in self._entries.values():
                if name in entry.spec.aliases:
                    return entry.spec.name
        return name

    def entry(self, name: str) -> CatalogEntry:
        """The entry for a name or alias; UnknownBackend lists what is known."""
        key = self.canonical(name)
        with self._lock:
            found = self._entries.get(key)
        if found is None:
            raise UnknownBackend(f"unknown backend {name!r} (available: {', '.join(self.names()) or 'none'})")
        return found

    def resolve(self, name: str) -> BackendSpec:
        return self.entry(name).spec

    def is_available(self, name: str) -> bool:
        try:
            return self.entry(name).available
        except UnknownBackend:
            return False

    def warn_unknown(self, names: Iterable[str], owner: str) -> None:
        """Log configured backend names nobody announced yet (a typo, or workers that have not started)."""
        unknown = [name for name in names if name not in self]
        if unknown:
            log.warning("%s names backend(s) %s that no worker announced yet and that are not installed here; they "
                        "are offered once a worker serving them starts", owner, ", ".join(unknown))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.canonical(name) in self.names()

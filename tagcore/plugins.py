"""Plugin loading and the registries built from it.

Plugins are modules that implement the hooks in `hookspecs`. They are found through the `tag` entry-point group
(built-in ones too) and, for local experiments and tests, through module paths in `TAG_PLUGIN_MODULES`.
`TAG_PLUGINS` (comma-separated entry-point names) restricts which installed plugins load; empty loads none.
"""
from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import ModuleType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pluggy

from . import hookspecs
from .errors import PluginError, UnknownBackend

if TYPE_CHECKING:
    from .backend import Backend
    from .frontend import Frontend
    from .scoring import Scorer
    from .transport import Transport

ENTRY_POINT_GROUP = "tag"
C = TypeVar("C")

_lock = threading.Lock()
_manager: pluggy.PluginManager | None = None
log = logging.getLogger(__name__)
broken: dict[str, str] = {}
"""Installed plugins that failed to import: entry-point name -> error (shown by `tag plugins`)."""


def _selected(env: str | None) -> set[str] | None:
    if env is None:
        return None
    return {name.strip() for name in env.split(",") if name.strip()}


def load_plugins(manager: pluggy.PluginManager, environ: Mapping[str, str] | None = None) -> None:
    """Register installed entry-point plugins (filtered by TAG_PLUGINS) and TAG_PLUGIN_MODULES modules."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    selected = _selected(env.get("TAG_PLUGINS"))
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if selected is not None and ep.name not in selected:
            continue
        if manager.has_plugin(ep.name):
            continue
        try:
            module = ep.load()
        except Exception as exc:  # one broken plugin must not take every command down with it
            broken[ep.name] = f"{type(exc).__name__}: {exc}"
            log.warning("plugin %r (%s) failed to import and is skipped: %s", ep.name, ep.value, exc)
            continue
        manager.register(module, name=ep.name)
    for path in filter(None, (p.strip() for p in env.get("TAG_PLUGIN_MODULES", "").split(","))):
        if manager.has_plugin(path):
            continue
        try:
            module = importlib.import_module(path)
        except ImportError as exc:
            raise PluginError(f"TAG_PLUGIN_MODULES names {path!r}, which cannot be imported: {exc}") from exc
        manager.register(module, name=path)


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, created and loaded on first use."""
    global _manager
    with _lock:
        if _manager is None:
            manager = pluggy.PluginManager(hookspecs.PROJECT)
            manager.add_hookspecs(hookspecs)
            load_plugins(manager)
            _manager = manager
        return _manager


def register_plugin(module: ModuleType | object, name: str | None = None) -> None:
    """Register a plugin object at run time (tests, embedding applications); registering twice is a no-op."""
    manager = get_plugin_manager()
    if not manager.is_registered(module):
        manager.register(module, name=name)


def unregister_plugin(name: str) -> None:
    manager = get_plugin_manager()
    plugin = manager.get_plugin(name)
    if plugin is not None:
        manager.unregister(plugin)


def loaded_plugins() -> list[tuple[str, ModuleType | object]]:
    return list(get_plugin_manager().list_name_plugin())


@dataclass(frozen=True)
class Registry(Generic[C]):
    """Classes registered through one hook, addressable by `name` and `aliases`."""

    kind: str
    classes: dict[str, type[C]]
    aliases: dict[str, str]

    def names(self) -> list[str]:
        return sorted(self.classes)

    def get(self, name: str) -> type[C]:
        key = self.aliases.get(name, name)
        try:
            return self.classes[key]
        except KeyError:
            known = ", ".join(self.names()) or "none installed"
            error = UnknownBackend if self.kind == "backend" else PluginError
            raise error(f"unknown {self.kind} {name!r} (available: {known})") from None

    def __contains__(self, name: str) -> bool:
        return self.aliases.get(name, name) in self.classes

    def __iter__(self) -> Iterator[type[C]]:
        return iter(self.classes[n] for n in self.names())


def _collect(kind: str, hook: Callable[..., Any]) -> Registry[Any]:
    classes: dict[str, type] = {}
    aliases: dict[str, str] = {}

    def register(cls: type) -> None:
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"{kind} {cls!r} has no name")
        if name in classes and classes[name] is not cls:
            raise PluginError(f"two plugins register a {kind} named {name!r}: {classes[name]!r} and {cls!r}")
        classes[name] = cls
        for alias in getattr(cls, "aliases", ()):
            aliases[alias] = name

    hook(register=register)
    return Registry(kind, classes, aliases)


def backends() -> Registry[Backend]:
    return _collect("backend", get_plugin_manager().hook.register_backends)


def transports() -> Registry[Transport]:
    return _collect("transport", get_plugin_manager().hook.register_transports)


def frontends() -> Registry[Frontend]:
    return _collect("frontend", get_plugin_manager().hook.register_frontends)


def scorers() -> Registry[Scorer]:
    return _collect("scorer", get_plugin_manager().hook.register_scorers)


def settings_sections() -> dict[str, type]:
    """Config sections the loaded plugins declared: section name -> settings dataclass."""
    sections: dict[str, type] = {}

    def register(section: str, cls: type) -> None:
        if sections.get(section, cls) is not cls:
            raise PluginError(f"two plugins declare the config section [{section}]: {sections[section]!r} and {cls!r}")
        sections[section] = cls

    get_plugin_manager().hook.register_settings(register=register)
    return sections


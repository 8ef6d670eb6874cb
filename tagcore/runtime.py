"""Building the pieces a command needs (backend instances, transport, scorer) from configuration."""
from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from . import plugins
from .backend import Backend
from .catalog import BackendCatalog
from .config import Config
from .errors import ConfigError, TagError
from .scoring import Scorer
from .spec import BackendSpec
from .transport import Transport


def backend_class(name: str) -> type[Backend]:
    return plugins.backends().get(name)


def build_backend(name: str, config: Config, overrides: Mapping[str, Any] | None = None) -> Backend:
    """An (unloaded) backend with worker options from the config, overridden by `overrides`."""
    cls = backend_class(name)
    settings = config.backend_settings(cls.name)
    settings.update(overrides or {})
    if "device" in settings and settings["device"] in (None, "", "auto") and config.device != "auto":
        settings["device"] = config.device
    elif "device" not in settings and config.device != "auto" and any(o.name == "device" for o in cls.options):
        settings["device"] = config.device
    return cls(settings)


def installed_specs(config: Config, skip: Collection[str] = ()) -> list[BackendSpec]:
    """Specs of the backends installed in this process, with the worker options the configuration gives them;
    those named in `skip` (already known) are not computed again (a spec may read the weights' config)."""
    specs = []
    for cls in plugins.backends():
        if cls.name in skip:
            continue
        try:
            settings = cls.resolve_worker_options(config.backend_settings(cls.name))
        except TagError:  # a bad [backends.X] table is reported where that worker starts
            settings = cls.resolve_worker_options({})
        specs.append(BackendSpec.from_backend(cls, settings))
    return specs


def client_catalog(transport: Transport, config: Config) -> BackendCatalog:
    """What a client of `transport` can ask for: announced specs, and installed backends until one is announced."""
    catalog = transport.catalog()
    catalog.add_installed(installed_specs(config, skip=catalog.names()))
    return catalog


def build_transport(config: Config, name: str | None = None) -> Transport:
    cls = plugins.transports().get(name or config.transport)
    return cls(config)


def build_scorer(config: Config) -> Scorer | None:
    """The configured scorer (`scorer = "clap"`), or None when ranking is not configured."""
    if not config.scorer:
        return None
    registry = plugins.scorers()
    if config.scorer not in registry:
        raise ConfigError(f"scorer {config.scorer!r} is not installed (available: {', '.join(registry.names()) or 'none'})")
    return registry.get(config.scorer)(config)

"""tagcore: the model-agnostic core of TAG (plugins, messages, worker loop, audio output, configuration).

`__all__` is what plugins build on: backends (Backend, BackendSpec, Option...), transports (Transport, Job,
JobSource, TransportClient, BackendCatalog), frontends (Frontend), scorers (Scorer), messages, settings and the
errors whose codes frontends branch on.
"""
from .audio_types import Audio
from .backend import Backend, GenerationItem, GenerationResult, ProgressCallback, WeightsStatus
from .catalog import BackendCatalog, CatalogEntry
from .config import Config, Secret, settings_from_table
from .errors import (ConfigError, EmptyPrompt, GenerationFailed, InvalidRequest, MessageError, PluginError,
                     RequestTimedOut, TagError, UnknownBackend, UnknownOption, UnreadableAudio, WeightsMissing)
from .frontend import Frontend
from .hookspecs import hookimpl
from .messages import Context, ProgressEvent, SoundRequest, SoundResponse
from .options import Option
from .scoring import Scorer
from .spec import BackendSpec, Capabilities
from .transport import Event, Job, JobSource, Listener, Transport, TransportClient

__all__ = [
    "Audio", "Backend", "Capabilities", "GenerationItem", "GenerationResult", "ProgressCallback", "WeightsStatus",
    "BackendCatalog", "CatalogEntry", "Config", "Secret", "settings_from_table",
    "ConfigError", "EmptyPrompt", "GenerationFailed", "InvalidRequest", "MessageError", "PluginError",
    "RequestTimedOut", "TagError", "UnknownBackend", "UnknownOption", "UnreadableAudio", "WeightsMissing",
    "Frontend", "hookimpl", "Context", "ProgressEvent", "SoundRequest", "SoundResponse", "Option", "Scorer",
    "BackendSpec", "Event", "Job", "JobSource", "Listener", "Transport", "TransportClient",
]

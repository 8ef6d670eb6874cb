"""tagcore: the model-agnostic core of TAG (plugins, messages, worker loop, audio output, configuration)."""
from .audio_types import Audio
from .backend import Backend, Capabilities, GenerationItem, GenerationResult, WeightsStatus
from .errors import InvalidRequest, TagError, WeightsMissing
from .hookspecs import hookimpl
from .messages import ProgressEvent, SoundRequest, SoundResponse
from .options import Option

__all__ = [
    "Audio", "Backend", "Capabilities", "GenerationItem", "GenerationResult", "WeightsStatus", "InvalidRequest",
    "TagError", "WeightsMissing", "hookimpl", "ProgressEvent", "SoundRequest", "SoundResponse", "Option",
]

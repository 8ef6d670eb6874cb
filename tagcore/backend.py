"""What a backend is: the contract every model plugin implements.

A backend class declares what it can do (sample rate, native window, capabilities, typed options) so that the
CLI, the worker and the frontends can validate a request before any model is loaded. An instance is built with
its worker options (weights, device, dtype...), loaded once, and then serves many requests.
"""
from __future__ import annotations

import abc
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .audio_types import Audio
from .options import Option, resolve_options
from .spec import AUDIO_ROLE_OPTION, BackendSpec, Capabilities

ProgressCallback = Callable[[float, str], None]
"""Called with (fraction done in [0, 1], short stage name) while a batch is generated."""

MAX_SEED = 2**31 - 1


def new_seed() -> int:
    """A fresh random seed, so that every result can report the seed that reproduces it."""
    return secrets.randbelow(MAX_SEED + 1)


@dataclass(frozen=True)
class WeightsStatus:
    """Whether a backend's weights are present, where they were looked for, and what is missing."""

    present: bool
    location: str
    detail: str = ""


@dataclass(frozen=True)
class GenerationItem:
    """One prompt of a batch, with its own seed and optional conditioning."""

    prompt: str
    seed: int
    candidates: int = 1
    negative_prompt: str | None = None
    audio_prompt: Audio | None = None


@dataclass
class GenerationResult:
    """The clips generated for one item: `candidates[0]` is the one to deliver unless a scorer reorders them."""

    candidates: list[Audio]
    seed: int
    backend: str
    model_id: str
    timings: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def audio(self) -> Audio:
        return self.candidates[0]


class Backend(abc.ABC):
    """Base class of every generation backend.

    Subclasses set the class attributes and implement `load` and `generate_batch`; `generate` is the
    single-prompt convenience built on it. A backend that cannot batch still implements `generate_batch`
    (by looping) and declares `capabilities.batch = False`, so the worker will not group requests for it.
    """

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    sample_rate: ClassVar[int]
    channels: ClassVar[int] = 1
    native_max_duration: float
    """Length of the window the model was trained on (seconds)."""
    max_duration: float
    """Longest clip this backend can produce (windowed extension may exceed the native window).

    Both limits are declared on the class (what a client without the weights announces) and are not ClassVars:
    a backend whose limits come from its checkpoint sets its own on the instance, as its `spec(settings)` says."""
    min_duration: ClassVar[float] = 1.0
    variable_length: ClassVar[bool] = False
    """True for backends whose output length follows the content (speech): the requested duration is then an
    upper bound, and a shorter clip is delivered as it is instead of being padded with silence."""
    capabilities: ClassVar[Capabilities] = Capabilities()
    options: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self.settings = self.resolve_worker_options(settings or {})
        self.loaded = False

    # --- declarations -------------------------------------------------------------------------------------
    @classmethod
    def resolve_worker_options(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        return resolve_options(cls.options, given, scope="worker", owner=cls.name)

    @classmethod
    def resolve_request_options(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        return resolve_options(cls.options, given, scope="request", owner=cls.name)

    @classmethod
    def spec(cls, settings: Mapping[str, Any]) -> BackendSpec:
        """What a worker loaded with `settings` announces. The default is the class attributes; a backend whose
        limits depend on its weights (a variant with a longer window) overrides this to say what it can do."""
        return BackendSpec.from_attributes(cls)

    @classmethod
    def check_request(cls, options: Mapping[str, Any], *, negative_prompt: str | None,
                      audio_prompt: Audio | None) -> None:
        """Backend-specific rules that tie resolved request options to the prompts (e.g. a negative prompt needs
        guidance); raise InvalidRequest. They need the backend's code, so the worker that runs it applies them to every
        request after `validate_request` (a torch-free client only has the spec)."""

    @classmethod
    def weights_status(cls, settings: Mapping[str, Any]) -> WeightsStatus:
        """Where this backend's weights would be loaded from with `settings`, and whether they are there.

        Must be cheap and must not load the model: `tag backends` calls it for every backend.
        """
        return WeightsStatus(True, "none needed")

    @property
    def model_id(self) -> str:
        """Names the exact weights in use (reported with every result)."""
        return self.name

    # --- life cycle ---------------------------------------------------------------------------------------
    @abc.abstractmethod
    def load(self) -> None:
        """Load the model onto the configured device; raise WeightsMissing naming the missing file."""

    def warm_up(self, shapes: Sequence[tuple[float, int]]) -> float:
        """Prepare now what the first requests of these (seconds, batch size) shapes would otherwise pay for
        (captured CUDA graphs, compiled kernels), so that a worker answers its first requests at full speed;
        returns the seconds spent. Called after loading (`tag worker --warmup`). The default has nothing to do."""
        return 0.0

    def unload(self) -> None:
        """Release the model's memory. The default forgets the loaded flag; subclasses drop their modules."""
        self.loaded = False

    def ensure_loaded(self) -> None:
        if not self.loaded:
            self.load()
            self.loaded = True

    # --- generation ---------------------------------------------------------------------------------------
    @abc.abstractmethod
    def generate_batch(
        self,
        items: Sequence[GenerationItem],
        duration: float,
        *,
        options: Mapping[str, Any],
        progress: ProgressCallback | None = None,
    ) -> list[GenerationResult]:
        """Generate every item at `duration` seconds with resolved request `options`.

        Each result's clips are exactly `round(duration * sample_rate)` frames long, or at most that many for a
        `variable_length` backend.
        """

    def generate(
        self,
        prompt: str,
        duration: float,
        *,
        seed: int | None = None,
        options: Mapping[str, Any] | None = None,
        candidates: int = 1,
        negative_prompt: str | None = None,
        audio_prompt: Audio | None = None,
        progress: ProgressCallback | None = None,
    ) -> GenerationResult:
        """Generate one prompt; a missing seed is drawn at random and reported in the result."""
        self.ensure_loaded()
        item = GenerationItem(
            prompt=prompt,
            seed=new_seed() if seed is None else seed,
            candidates=candidates,
            negative_prompt=negative_prompt,
            audio_prompt=audio_prompt,
        )
        resolved = self.resolve_request_options(options or {})
        return self.generate_batch([item], duration, options=resolved, progress=progress)[0]

    def frames_for(self, duration: float) -> int:
        """The exact number of output frames for `duration` seconds."""
        return int(round(duration * self.sample_rate))

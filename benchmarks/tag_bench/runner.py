"""Running the benchmark grid through the tagcore Backend API: backends x steps x batch sizes x durations.

Each backend is built and loaded once (the cold load is timed), warmed up with one untimed batch, and then
generates the whole prompt set for every grid cell. Only `generate_batch` is timed; scoring happens afterwards.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tagcore import runtime
from tagcore.audio_types import Audio
from tagcore.backend import Backend, GenerationItem
from tagcore.config import Config
from tagcore.errors import InvalidRequest, UnknownOption

from .memory import PeakMemory
from .speech_quality import SpeechQuality, clones_voices

NA = "n/a"


class Quality:
    """What the benchmark can say about a cell's clips: (CLAP score, FAD), None for what is not measured."""

    @property
    def model_id(self) -> str:
        """The scoring model's name, reported with the run; read-only, as subclasses compute it."""
        return NA

    def measure(self, prompts: Sequence[str], clips: Sequence[Audio]) -> tuple[float | None, float | None]:
        return None, None


@dataclass(frozen=True)
class Plan:
    """What to run. `steps` is swept only on backends that declare a `steps` option.

    `options` keys apply to every backend that declares them; a key `BACKEND.key` applies to that backend only
    (and wins over the plain key), so one run can point each backend at its own weights folder.
    """

    backends: Sequence[str]
    prompts: Sequence[str]
    steps: Sequence[int] = ()
    batches: Sequence[int] = (1,)
    durations: Sequence[float] = (5.0,)
    options: Mapping[str, str] = field(default_factory=dict)
    seed: int = 0
    warmup: bool = True
    voice_sample: Audio | None = None
    """Given to every backend that clones voices (audio_prompt_role "voice") as each clip's audio prompt."""


@dataclass
class Row:
    """One benchmark run (one grid cell of one backend); `n/a` marks what was not measured."""

    backend: str
    model_id: str
    device: str
    dtype: str
    steps: int | str
    batch: int
    duration: float
    audio_s: float
    clips: int
    load_s: float
    s_per_clip: float
    rtf: float
    clips_per_s: float
    peak_rss_mb: float
    cuda_peak_mb: float | str
    clap: float | str
    fad: float | str
    wer: float | str
    speaker_sim: float | str


COLUMNS = tuple(Row.__dataclass_fields__)


def _scope(key: str, names: Sequence[str]) -> tuple[str | None, str]:
    """(backend the key is scoped to or None, option name): `make_an_audio.weights` -> ("make_an_audio", "weights")."""
    prefix, dot, rest = key.partition(".")
    return (prefix, rest) if dot and prefix in names else (None, key)


def backend_options(name: str, plan: Plan) -> dict[str, str]:
    """The options of backend `name` (as given with -b): plain keys, then its own scoped keys over them."""
    cls = runtime.backend_class(name)
    own = {name, cls.name}
    plain, scoped = {}, {}
    for key, value in plan.options.items():
        backend, option = _scope(key, [*plan.backends, *(runtime.backend_class(b).name for b in plan.backends)])
        if backend is None:
            plain[option] = value
        elif backend in own:
            scoped[option] = value
    return plain | scoped


def split_options(backend: type[Backend], raw: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(worker settings, request options) among `raw` that `backend` declares, by each option's scope."""
    scopes = {o.name: o.scope for o in backend.options} | {a: o.scope for o in backend.options for a in o.aliases}
    worker = {k: v for k, v in raw.items() if scopes.get(k) == "worker"}
    request = {k: v for k, v in raw.items() if scopes.get(k) == "request"}
    return worker, request


def check_plan(plan: Plan) -> None:
    """Fail before any model loads: unknown backends, options no backend has, durations out of range."""
    if not plan.backends:
        raise InvalidRequest("name at least one backend (-b NAME)")
    classes = [runtime.backend_class(name) for name in plan.backends]
    names = [*plan.backends, *(cls.name for cls in classes)]
    known = {n for cls in classes for o in cls.options for n in (o.name, *o.aliases)}
    unknown = sorted(key for key in plan.options if _scope(key, names)[0] is None and key not in known)
    if unknown:
        raise UnknownOption(f"no selected backend has option {', '.join(unknown)} "
                            f"(scope an option to one backend as BACKEND.KEY=VALUE)")
    if min(plan.batches) < 1:
        raise InvalidRequest("batch sizes must be at least 1")
    for name, cls in zip(plan.backends, classes):
        options = backend_options(name, plan)
        declared = {n for o in cls.options for n in (o.name, *o.aliases)}
        foreign = sorted(set(options) - declared)
        scoped_unknown = [k for k in foreign if f"{name}.{k}" in plan.options or f"{cls.name}.{k}" in plan.options]
        if scoped_unknown:
            raise UnknownOption(f"{cls.name} has no option {', '.join(scoped_unknown)}")
        worker, request = split_options(cls, options)
        cls.resolve_worker_options(worker)
        cls.resolve_request_options(request)
        for duration in plan.durations:
            if not cls.min_duration <= duration <= cls.max_duration:
                raise InvalidRequest(f"{cls.name} generates {cls.min_duration:g}-{cls.max_duration:g} s, "
                                     f"not {duration:g} s")
        if plan.steps and any(o.name == "steps" for o in cls.options):
            steps_option = next(o for o in cls.options if o.name == "steps")
            for steps in plan.steps:
                steps_option.parse(steps)


def count_runs(plan: Plan) -> int:
    """Number of generate_batch calls the plan makes (for the progress bar), warm-ups included."""
    total = 0
    for name in plan.backends:
        cls = runtime.backend_class(name)
        sweeps = len(plan.steps) if plan.steps and any(o.name == "steps" for o in cls.options) else 1
        per_cell = sum(-(-len(plan.prompts) // b) for b in plan.batches) * len(plan.durations)
        total += sweeps * per_cell + (1 if plan.warmup else 0)
    return total


def _torch_modules(backend: Backend) -> Iterator[Any]:
    """torch modules held by the backend or by its `model` (audiocraft keeps them one level down, e.g. model.lm)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    for holder in (backend, getattr(backend, "model", None)):
        if holder is None or not hasattr(holder, "__dict__"):
            continue
        if isinstance(holder, torch.nn.Module):
            yield holder
            continue
        yield from (v for v in vars(holder).values() if isinstance(v, torch.nn.Module))


def _described(backend: Backend, attribute: str) -> str:
    """The resolved device/dtype: the backend's (or its model's) attribute, else its first weight's, else the
    configured setting ("auto" says nothing about what ran, so it is looked past when anything better exists)."""
    for holder in (backend, getattr(backend, "model", None)):
        value = getattr(holder, attribute, None)
        if value not in (None, "", "auto") and not callable(value):
            return str(getattr(value, "type", value) if attribute == "device" else value).replace("torch.", "")
    for module in _torch_modules(backend):
        weight = next(module.parameters(), None)
        if weight is not None:
            return weight.device.type if attribute == "device" else str(weight.dtype).replace("torch.", "")
    value = backend.settings.get(attribute)
    return str(value) if value not in (None, "") else NA


def _batches(prompts: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(prompts), size):
        yield list(prompts[start:start + size])


def run_backend(name: str, plan: Plan, config: Config, quality: Quality,
                tick: Callable[[str], None], speech: SpeechQuality | None = None) -> list[Row]:
    """Every grid cell of one backend, in a freshly built and loaded instance."""
    cls = runtime.backend_class(name)
    speech = speech or SpeechQuality()
    sample = plan.voice_sample if clones_voices(cls) else None
    worker, request = split_options(cls, backend_options(name, plan))
    backend = runtime.build_backend(name, config, worker)
    with PeakMemory() as load_memory:
        start = time.perf_counter()
        backend.ensure_loaded()
        load_s = time.perf_counter() - start
    has_steps = any(o.name == "steps" for o in cls.options)
    sweep: list[int | None] = list(plan.steps) if plan.steps and has_steps else [None]
    try:
        if plan.warmup:  # at the cheapest swept steps: a default of 100 steps can cost minutes on a CPU
            warm = dict(request) | ({"steps": min(plan.steps)} if plan.steps and has_steps else {})
            options = backend.resolve_request_options(warm)
            backend.generate_batch([GenerationItem(plan.prompts[0], plan.seed, audio_prompt=sample)],
                                   min(plan.durations), options=options)
            tick(f"{name} warm-up")
        rows = []
        for steps in sweep:
            given = dict(request) | ({"steps": steps} if steps is not None else {})
            options = backend.resolve_request_options(given)
            for batch in plan.batches:
                for duration in plan.durations:
                    clips: list[Audio] = []
                    model_ids: set[str] = set()
                    elapsed = 0.0
                    with PeakMemory() as memory:
                        for chunk in _batches(plan.prompts, batch):
                            items = [GenerationItem(p, plan.seed + len(clips) + i, audio_prompt=sample)
                                     for i, p in enumerate(chunk)]
                            start = time.perf_counter()
                            results = backend.generate_batch(items, duration, options=options)
                            elapsed += time.perf_counter() - start
                            clips.extend(r.audio for r in results)
                            model_ids.update(r.model_id for r in results)
                            tick(f"{name} steps={steps if steps is not None else NA} batch={batch} {duration:g}s")
                    s_per_clip = elapsed / len(clips)
                    audio_s = sum(clip.duration for clip in clips)
                    clap, fad = quality.measure(plan.prompts, clips)
                    wer, similarity = speech.measure(cls, plan.prompts, clips, sample)
                    rows.append(Row(
                        backend=name, model_id=",".join(sorted(model_ids)), device=_described(backend, "device"),
                        dtype=_described(backend, "dtype"),
                        steps=options["steps"] if has_steps else NA, batch=batch, duration=duration,
                        audio_s=audio_s / len(clips), clips=len(clips), load_s=load_s, s_per_clip=s_per_clip,
                        rtf=elapsed / audio_s if audio_s > 0 else float("inf"),
                        clips_per_s=len(clips) / elapsed if elapsed > 0 else float("inf"),
                        peak_rss_mb=max(memory.rss_mb, load_memory.rss_mb),
                        cuda_peak_mb=NA if memory.cuda_mb is None else max(memory.cuda_mb, load_memory.cuda_mb or 0),
                        clap=NA if clap is None else clap, fad=NA if fad is None else fad,
                        wer=NA if wer is None else wer, speaker_sim=NA if similarity is None else similarity,
                    ))
        return rows
    finally:
        backend.unload()


def run_plan(plan: Plan, config: Config, quality: Quality, tick: Callable[[str], None],
             speech: SpeechQuality | None = None) -> Iterator[list[Row]]:
    """Yield each backend's rows as soon as it is done, so a long run can save them before the next one starts."""
    check_plan(plan)
    for name in plan.backends:
        yield run_backend(name, plan, config, quality, tick, speech)


"""ACE-Step 1.5 served through the diffusers AceStepPipeline: songs with lyrics (or instrumental), 48 kHz stereo.

Seeds: output row r (item i's candidate k) is sampled with its own `torch.Generator(device).manual_seed(seed_i +
k)`, passed to the pipeline as a list of generators; the pipeline draws each row's start noise from its own
generator (its flow-matching Euler sampler adds none later), so a song is what a direct call with
`generator=torch.Generator(device).manual_seed(seed)` and the same inputs gives.

Batching never changes a song, because rows share a call only where the pipeline treats them independently:
- the pipeline pads prompts to the longest one and does not mask the padding in the DiT's cross-attention, so
  only rows whose formatted prompts encode to the same number of tokens share a call (candidates always do);
- an audio prompt goes through the VAE encoder, whose posterior sample comes from torch's global generator: such
  rows run one per call, with that generator seeded by the row's seed inside `torch.random.fork_rng` (the
  worker's global random state is left as it was), so a direct call after `torch.manual_seed(seed)` equals it.

Audio prompt roles: continuation is the pipeline's repaint task (the clip is kept, the rest of the requested
duration is painted after it); variation is its cover task (a new song over the clip's 5 Hz semantic codes,
`strength` its audio_cover_strength), offered only when the checkpoint ships the audio tokenizer it needs.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from tagcore import (Audio, Backend, BackendSpec, Capabilities, GenerationItem, GenerationResult, Option,
                     WeightsStatus)
from tagcore.audio import resample
from tagcore.backend import AUDIO_ROLE_OPTION, ProgressCallback
from tagcore.devices import free_memory, quiet_model_loading, resolve_device, resolve_dtype
from tagcore.errors import GenerationFailed, InvalidRequest, WeightsMissing
from tagcore.options import device_option, dtype_option, weights_option

from . import weights as w

SAMPLE_RATE = 48000
ROLES = ("continuation", "variation")


class Row(NamedTuple):
    """One output clip: candidate `k` of item `item`, sampled with `seed`."""

    item: int
    k: int
    seed: int


class AceStepBackend(Backend):
    name = "ace_step"
    aliases = ("ace-step", "acestep", "song")
    description = ("ACE-Step 1.5 (ACE Studio and StepFun, 2026, MIT): songs with lyrics or instrumental music, "
                   "48 kHz stereo, 10 s to 10 min.")
    sample_rate = SAMPLE_RATE
    channels = 2
    min_duration = 10.0
    # The documented bound; a worker reads its checkpoint's own (weights.max_duration).
    native_max_duration = w.DOCUMENTED_MAX
    max_duration = w.DOCUMENTED_MAX
    capabilities = Capabilities(seed=True, batch=True, candidates=True, audio_prompt=True,
                                audio_prompt_role="continuation", max_audio_prompt=w.DOCUMENTED_MAX)
    options = (
        Option("lyrics", "str", "", "the song's lyrics, sections tagged [verse], [chorus], [bridge]... on their own "
               "lines; empty: instrumental", multiline=True),
        Option("language", "str", "en", "language code of the lyrics (en, zh, ja, ko, fr, de, es...)"),
        Option("steps", "int", 8, "sampling steps (the pipeline's default is 8, what turbo is distilled for; "
               "30 to 60 suit base checkpoints)", minimum=1, maximum=200),
        Option("guidance", "float", 7.0, "guidance scale of base checkpoints (the pipeline's default is 7; 1 = "
               "off); turbo checkpoints have it distilled in and ignore it", minimum=1.0, maximum=30.0),
        Option("shift", "float", 3.0, "timestep schedule shift (the pipeline's default is 3; 1, 2 and 3 are the "
               "trained ones)", minimum=0.1, maximum=10.0),
        Option(AUDIO_ROLE_OPTION, "choice", "continuation", "what an audio prompt is for: continuation (it stays "
               "the first seconds, the song goes on after it) or variation (a new song over the clip's structure)",
               choices=ROLES),
        Option("strength", "float", 1.0, "variation only: how closely the song follows the clip (lower mixes in "
               "plain text-to-music)", minimum=0.0, maximum=1.0),
        weights_option("folder in the hub layout (model_index.json at its root) or a hub id such as "
                       f"{w.CHECKPOINTS.repo(w.CHECKPOINTS.default)}, read from the hub cache only (the default)"),
        device_option(),
        dtype_option(),
    )

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(settings)
        self.source = w.CHECKPOINTS.configured(self.settings)
        self.model: Any = None
        self.device: Any = None
        self.longest = self.spec(self.settings).max_duration
        """Longest song of the weights this instance serves (the class attribute is the family's bound)."""

    @classmethod
    def spec(cls, settings: Mapping[str, Any]) -> BackendSpec:
        """A worker announces the longest song its checkpoint makes and only the roles it can serve (variation
        needs the audio tokenizer); without readable weights, the family's bounds and roles."""
        family = BackendSpec.from_attributes(cls)
        folder = w.CHECKPOINTS.complete_folder(w.CHECKPOINTS.configured(settings))
        if folder is None:
            return family
        longest = w.max_duration(folder)
        options = family.options if w.has_codec(folder) else _without_variation(family.options)
        return dataclasses.replace(family, max_duration=longest, native_max_duration=longest, options=options)

    @classmethod
    def weights_status(cls, settings: Mapping[str, Any]) -> WeightsStatus:
        source = w.CHECKPOINTS.configured(settings)
        return w.CHECKPOINTS.status(source, lambda folder: f"up to {w.max_duration(folder):g} s")

    @property
    def model_id(self) -> str:
        return f"{self.name}:{self.source.model_id}"

    def load(self) -> None:
        from diffusers import AceStepPipeline

        folder = w.CHECKPOINTS.check(self.source)
        device = resolve_device(self.settings["device"])
        dtype = resolve_dtype(self.settings["dtype"], device)
        try:
            with quiet_model_loading():  # diffusers imports xformers
                pipe = AceStepPipeline.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise WeightsMissing(f"could not load {folder} as an AceStepPipeline: {exc}") from exc
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        self.model, self.device = pipe, device
        self.longest = w.max_duration(folder)

    def unload(self) -> None:
        self.model = None
        free_memory()
        super().unload()

    # --- generation ---------------------------------------------------------------------------------------
    def generate_batch(self, items: Sequence[GenerationItem], duration: float, *, options: Mapping[str, Any],
                       progress: ProgressCallback | None = None) -> list[GenerationResult]:
        self.ensure_loaded()
        self.check_batch(items, duration, options)
        groups = self.groups(items, duration, options)
        clips: dict[tuple[int, int], Audio] = {}
        used: dict[int, dict[str, Any]] = {}
        seconds: dict[int, float] = defaultdict(float)
        total, done = sum(len(rows) for rows in groups), 0
        for rows in groups:
            report = _share(progress, done / total, len(rows) / total)
            started = time.perf_counter()
            audio, info = self.run_pipeline([items[r.item] for r in rows], rows, duration, options, report)
            elapsed = time.perf_counter() - started
            for row, clip in zip(rows, self._clips(audio, duration)):
                clips[row.item, row.k] = clip
                used[row.item] = {**info, "batch_rows": len(rows)}
                seconds[row.item] += elapsed / len(rows)
            done += len(rows)
        if progress:
            progress(1.0, "done")
        dtype = str(self.model.dtype).replace("torch.", "")
        return [GenerationResult([clips[i, k] for k in range(item.candidates)], item.seed, self.name, self.model_id,
                                 {"generate_s": round(seconds[i], 4)},
                                 {**used[i], "device": str(self.device), "dtype": dtype})
                for i, item in enumerate(items)]

    def check_batch(self, items: Sequence[GenerationItem], duration: float, options: Mapping[str, Any]) -> None:
        """What the frontends' validation already refuses, checked again for callers that skip it."""
        if not self.min_duration <= duration <= self.longest:
            raise InvalidRequest(f"{self.model_id} makes songs of {self.min_duration:g} to {self.longest:g} s, "
                                 f"not {duration:g} s")
        for item in items:
            if item.negative_prompt:
                raise InvalidRequest(f"{self.name} takes no negative prompt (the pipeline has none)")
            if item.audio_prompt is None:
                continue
            if options[AUDIO_ROLE_OPTION] == "variation" and not all(
                    getattr(self.model, name, None) is not None for name in w.CODEC):
                raise InvalidRequest(f"{self.model_id} cannot make variations: its weights have no audio "
                                     f"tokenizer ({' and '.join(w.CODEC)} in model_index.json)")
            if options[AUDIO_ROLE_OPTION] == "continuation" and item.audio_prompt.duration >= duration:
                raise InvalidRequest(f"the audio prompt ({item.audio_prompt.duration:.2f} s) must be shorter than "
                                     f"the requested {duration:g} s")

    def groups(self, items: Sequence[GenerationItem], duration: float,
               options: Mapping[str, Any]) -> list[list[Row]]:
        """Rows that may share a pipeline call (see the module docstring), in order of first appearance."""
        keyed: dict[Any, list[Row]] = defaultdict(list)
        for i, item in enumerate(items):
            for k in range(item.candidates):
                row = Row(i, k, item.seed + k)
                key = ("audio", i, k) if item.audio_prompt is not None else ("text", self.prompt_tokens(
                    item.prompt, duration, options))
                keyed[key].append(row)
        return list(keyed.values())

    def prompt_tokens(self, prompt: str, duration: float, options: Mapping[str, Any]) -> int:
        """How many tokens the pipeline's text encoder gets for `prompt` (its own template and truncation)."""
        text, _ = self.model._format_prompt(prompt=prompt, lyrics=options["lyrics"], vocal_language=options[
            "language"], audio_duration=duration)
        return len(self.model.tokenizer(text, truncation=True, max_length=256).input_ids)

    def run_pipeline(self, items: Sequence[GenerationItem], rows: Sequence[Row], duration: float,
                     options: Mapping[str, Any], report: ProgressCallback) -> tuple[Any, dict[str, Any]]:
        """One pipeline call for `rows` (`items[j]` is row j's item); return (audio rows, options used)."""
        import torch
        from diffusers import AceStepPipeline

        pipe: Any = AceStepPipeline(**{**self.model.components, "scheduler": self.fresh_scheduler()})
        pipe.set_progress_bar_config(disable=True)
        guidance = 1.0 if pipe.is_turbo else options["guidance"]  # turbo ignores it (and warns): say what ran
        steps = options["steps"]

        def on_step(_: Any, i: int, t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            report((i + 1) / steps, "generating")
            return tensors

        call: dict[str, Any] = dict(
            prompt=[item.prompt for item in items], lyrics=[options["lyrics"]] * len(rows),
            vocal_language=options["language"], audio_duration=float(duration), num_inference_steps=steps,
            guidance_scale=guidance, shift=options["shift"], callback_on_step_end=on_step,
            generator=[torch.Generator(self.device).manual_seed(row.seed) for row in rows])
        used = {"steps": steps, "guidance": guidance, "shift": options["shift"], "language": options["language"],
                "lyrics_chars": len(options["lyrics"]), "instrumental": not options["lyrics"].strip()}
        reference = items[0].audio_prompt
        if reference is None:
            return pipe(**call).audios, used
        extra, role_used = self.audio_task(reference, duration, options)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(rows[0].seed)  # the VAE's posterior sample of the clip (one row per call)
            audio = pipe(**call, **extra).audios
        return audio, {**used, **role_used}

    def audio_task(self, clip: Audio, duration: float,
                   options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The pipeline arguments of an audio prompt's role, and what the result reports about it."""
        frames = self.latent_frames(duration)
        role = options[AUDIO_ROLE_OPTION]
        samples = prompt_audio(clip)
        if role == "continuation":
            padded = np.zeros((2, frames), np.float32)  # the painted part: the pipeline puts silence latents there
            padded[:, :samples.shape[1]] = samples[:, :frames]
            return (dict(task_type="repaint", src_audio=self._tensor(padded), repainting_start=clip.duration,
                         repainting_end=float(duration)),
                    {AUDIO_ROLE_OPTION: role, "kept_s": round(clip.duration, 4)})
        looped = np.tile(samples, (1, math.ceil(frames / samples.shape[1])))[:, :frames]
        return (dict(task_type="cover", src_audio=self._tensor(looped), audio_cover_strength=options["strength"]),
                {AUDIO_ROLE_OPTION: role, "strength": options["strength"]})

    def latent_frames(self, duration: float) -> int:
        """Audio frames of the latent window the pipeline makes for `duration` (whole 40 ms latent frames): an
        audio prompt is fitted to it so that its song is as long as a text-only one."""
        hop = round(self.model.sample_rate / self.model.latents_per_second)
        return math.ceil(duration * self.model.latents_per_second) * hop

    def _tensor(self, samples: np.ndarray) -> Any:
        import torch

        return torch.from_numpy(np.ascontiguousarray(samples))

    def fresh_scheduler(self) -> Any:
        """A new scheduler from the shipped configuration: schedulers keep per-run state (step index)."""
        shipped = self.model.scheduler
        return type(shipped).from_config(shipped.config)

    def _clips(self, audio: Any, duration: float) -> list[Audio]:
        """Rows as Audio of exactly frames_for(duration) frames; the pipeline makes whole latent frames (40 ms),
        so it may make a few more, which are cut."""
        rows = audio.float().cpu().numpy()
        frames = self.frames_for(duration)
        if rows.shape[-1] < frames:
            raise GenerationFailed(f"the pipeline made {rows.shape[-1]} frames, not the {frames} asked for")
        return [Audio(np.ascontiguousarray(row[:, :frames]), self.sample_rate) for row in rows]


def _without_variation(options: tuple[Option, ...]) -> tuple[Option, ...]:
    """The options of a checkpoint without the audio tokenizer: continuation is the only role, strength goes."""
    narrowed = []
    for option in options:
        if option.name == AUDIO_ROLE_OPTION:
            option = dataclasses.replace(option, choices=("continuation",))
        if option.name != "strength":
            narrowed.append(option)
    return tuple(narrowed)


def _share(progress: ProgressCallback | None, offset: float, width: float) -> ProgressCallback:
    """Progress of one pipeline call mapped onto its share of the whole batch."""
    def report(fraction: float, stage: str) -> None:
        if progress:
            progress(offset + width * fraction, stage)
    return report


def prompt_audio(audio: Audio) -> np.ndarray:
    """An uploaded clip as the pipeline's source waveform: 48 kHz, stereo (mono is duplicated), (2, n) float32."""
    clip = resample(audio, SAMPLE_RATE)
    samples = clip.samples if clip.channels == 2 else np.repeat(clip.mono().samples, 2, axis=0)
    return samples.astype(np.float32)

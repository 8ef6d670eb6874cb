"""Stable Audio 3 and Stable Audio Open 1.0 served through the diffusers pipelines, 44.1 kHz stereo.

Seeds: output row r (item i's candidate k) is sampled with its own `torch.Generator(device).manual_seed(seed_i +
k)`, passed to the pipeline as a list of generators. diffusers draws the start noise and every re-noise of a row
from that row's generator, so a clip is what a direct pipeline call with `generator=torch.Generator(device)
.manual_seed(seed)` and the same options gives, and batching never changes a clip (up to float rounding of the
batched matrix products). Rows that cannot share a call without changing each other's result (different audio
prompt lengths; Stable Audio Open items with and without a negative prompt, whose unconditional embeddings differ)
are generated in separate calls.

What diffusers lacks and is written here: the request/batch mapping above, the variant's limits read from its
configuration, and the choice among the pipeline's compatible schedulers.
"""
from __future__ import annotations

import abc
import dataclasses
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tagcore import (Audio, Backend, BackendSpec, Capabilities, GenerationItem, GenerationResult, Option,
                     WeightsStatus)
from tagcore.audio import resample
from tagcore.backend import AUDIO_ROLE_OPTION, ProgressCallback
from tagcore.devices import free_memory, quiet_model_loading, resolve_device, resolve_dtype
from tagcore.errors import GenerationFailed, InvalidRequest, WeightsMissing
from tagcore.options import device_option, dtype_option, weights_option
from tagcore.weights import PublishedCheckpoints

from . import weights as w

SAMPLE_RATE = 44100


class DiffusersAudioBackend(Backend):
    """Loading, seeding, batching and result assembly shared by the Stable Audio pipelines."""

    checkpoints: ClassVar[PublishedCheckpoints]
    """The variants a `weights` value is read against: they locate, check and name the pull command."""
    pipeline_class: ClassVar[str]
    """The diffusers text-to-audio pipeline class that loads the weights."""
    sample_rate = SAMPLE_RATE
    channels = 2
    min_duration = 1.0

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(settings)
        self.source = self.checkpoints.configured(self.settings)
        self.model: Any = None
        self.device: Any = None
        self.max_duration = self.native_max_duration = self.spec(self.settings).max_duration

    @classmethod
    def spec(cls, settings: Mapping[str, Any]) -> BackendSpec:
        """A worker announces the longest clip its checkpoint makes (from the weights' configuration), not the
        family's bound; without readable weights, the family's."""
        family = BackendSpec.from_attributes(cls)
        folder = cls.checkpoints.complete_folder(cls.checkpoints.configured(settings))
        if folder is None:
            return family
        longest = cls.limit(folder)
        return dataclasses.replace(family, max_duration=longest, native_max_duration=longest)

    # --- weights ------------------------------------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def limit(cls, folder: Path) -> float:
        """Longest clip the checkpoint in `folder` makes, from its configuration files."""

    @classmethod
    def weights_status(cls, settings: Mapping[str, Any]) -> WeightsStatus:
        source = cls.checkpoints.configured(settings)
        return cls.checkpoints.status(source, lambda folder: f"up to {cls.limit(folder):g} s")

    @property
    def model_id(self) -> str:
        return f"{self.name}:{self.source.model_id}"

    def load(self) -> None:
        import diffusers

        folder = self.checkpoints.check(self.source)
        device = resolve_device(self.settings["device"])
        dtype = resolve_dtype(self.settings["dtype"], device)
        pipeline = getattr(diffusers, self.pipeline_class)
        try:
            with quiet_model_loading():  # diffusers imports xformers
                pipe = pipeline.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise WeightsMissing(f"could not load {folder} as a {self.pipeline_class}: {exc}") from exc
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        self.model, self.device = pipe, device
        self.max_duration = self.native_max_duration = self.limit(folder)

    def unload(self) -> None:
        self.model = None
        free_memory()
        super().unload()

    # --- generation ---------------------------------------------------------------------------------------
    def generate_batch(self, items: Sequence[GenerationItem], duration: float, *, options: Mapping[str, Any],
                       progress: ProgressCallback | None = None) -> list[GenerationResult]:
        self.ensure_loaded()
        if duration > self.max_duration:
            raise InvalidRequest(f"{self.model_id} makes clips of up to {self.max_duration:g} s, not {duration:g} s")
        groups: dict[Any, list[int]] = defaultdict(list)
        for index, item in enumerate(items):
            self.check_request(options, negative_prompt=item.negative_prompt, audio_prompt=item.audio_prompt)
            groups[self.group_key(item, options)].append(index)
        rows_total = sum(item.candidates for item in items)
        done = 0
        results: dict[int, GenerationResult] = {}
        for indices in groups.values():
            members = [items[i] for i in indices]
            rows = sum(item.candidates for item in members)
            report = _share(progress, done / rows_total, rows / rows_total)
            started = time.perf_counter()
            audio, used = self.run_pipeline(members, duration, options, self.generators(members), report)
            elapsed = time.perf_counter() - started
            clips = self._clips(audio, duration)
            start = 0
            for index, item in zip(indices, members):
                results[index] = GenerationResult(
                    clips[start:start + item.candidates], item.seed, self.name, self.model_id,
                    {"generate_s": round(elapsed * item.candidates / rows, 4)},
                    {**used, "batch_rows": rows, "device": str(self.device),
                     "dtype": str(self.model.dtype).replace("torch.", "")})
                start += item.candidates
            done += rows
        if progress:
            progress(1.0, "done")
        return [results[i] for i in range(len(items))]

    def group_key(self, item: GenerationItem, options: Mapping[str, Any]) -> Any:
        """Items with equal keys share one pipeline call."""
        return None

    @classmethod
    def check_request(cls, options: Mapping[str, Any], *, negative_prompt: str | None,
                      audio_prompt: Audio | None) -> None:
        if negative_prompt and options["guidance"] <= 1.0:  # the pipelines would silently ignore it
            raise InvalidRequest(f"a negative prompt needs guidance > 1 on {cls.name} (at 1 the pipeline ignores it)")

    @abc.abstractmethod
    def run_pipeline(self, items: Sequence[GenerationItem], duration: float, options: Mapping[str, Any],
                     generators: list[Any], report: ProgressCallback) -> tuple[Any, dict[str, Any]]:
        """Call the pipeline once for `items` (one row per candidate); return (audio rows, options used)."""

    def generators(self, items: Sequence[GenerationItem]) -> list[Any]:
        """One generator per output row: candidate k of an item with seed s is the clip seed s + k makes alone."""
        import torch

        return [torch.Generator(self.device).manual_seed(item.seed + k)
                for item in items for k in range(item.candidates)]

    def pipeline(self, name: str, **replaced: Any) -> Any:
        """The diffusers pipeline class `name` over the loaded components (shared, not copied), `replaced` swapped
        in; cheap, so each call gets its own with its own scheduler."""
        import diffusers

        pipe = getattr(diffusers, name)(**{**self.model.components, **replaced})
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def fresh_scheduler(self, **overrides: Any) -> Any:
        """A new scheduler from the shipped configuration: schedulers keep per-run state (step index, noise trees)."""
        shipped = self.model.scheduler
        return type(shipped).from_config(shipped.config, **overrides)

    def _clips(self, audio: Any, duration: float) -> list[Audio]:
        """Rows as Audio of exactly frames_for(duration) frames. diffusers truncates duration * rate where TAG
        rounds, so a row may lack one frame; it is repeated from the last one (never more)."""
        rows = audio.float().cpu().numpy()
        frames = self.frames_for(duration)
        if frames - rows.shape[-1] > 1:
            raise GenerationFailed(f"the pipeline made {rows.shape[-1]} frames, not the {frames} asked for")
        if rows.shape[-1] < frames:
            rows = np.concatenate([rows, rows[..., -1:]], axis=-1)
        return [Audio(row[:, :frames], self.sample_rate) for row in rows]


def _share(progress: ProgressCallback | None, offset: float, width: float) -> ProgressCallback:
    """Progress of one pipeline call mapped onto its share of the whole batch."""
    def report(fraction: float, stage: str) -> None:
        if progress:
            progress(offset + width * fraction, stage)
    return report


def prompt_audio(audio: Audio) -> Any:
    """An uploaded clip as the pipeline's reference waveform: 44.1 kHz, stereo (mono is duplicated), (1, 2, n)."""
    import torch

    clip = resample(audio, SAMPLE_RATE)
    samples = clip.samples if clip.channels == 2 else np.repeat(clip.mono().samples, 2, axis=0)
    return torch.from_numpy(np.ascontiguousarray(samples))[None]


# --- Stable Audio 3 ---------------------------------------------------------------------------------------
SA3_SCHEDULERS = ("shipped", "pingpong", "euler")


class StableAudio3Backend(DiffusersAudioBackend):
    name = "stable_audio_3"
    aliases = ("sa3", "stable-audio-3")
    description = ("Stable Audio 3 (Stability AI, 2026): distilled rectified-flow DiT, 44.1 kHz stereo; variant "
                   "from the weights (small-sfx, small-music, medium).")
    checkpoints = w.SA3
    pipeline_class = "StableAudio3Pipeline"
    # The family's bound (SA3 medium's duration embedder clamps at 384 s); a worker narrows it to its checkpoint's
    # own `duration_embedder/config.json` max_val (120 s for the small models).
    native_max_duration = 384.0
    max_duration = 384.0
    capabilities = Capabilities(seed=True, batch=True, candidates=True, negative_prompt=True, audio_prompt=True,
                                audio_prompt_role="continuation", max_audio_prompt=384.0)
    options = (
        Option("steps", "int", 0, "sampling steps (0: the pipeline's default, 8 with the distilled ping-pong "
               "scheduler, 100 with Euler)", minimum=0, maximum=1000),
        Option("guidance", "float", 1.0, "classifier-free guidance (1 = off, right for the distilled checkpoints; "
               "> 1 for base checkpoints, and needed for a negative prompt)", minimum=1.0, maximum=30.0),
        Option("scheduler", "choice", "shipped", "shipped (as in the weights), pingpong (stochastic re-noise, the "
               "distilled sampler) or euler (deterministic flow-matching Euler)", choices=SA3_SCHEDULERS),
        Option(AUDIO_ROLE_OPTION, "choice", "continuation", "what an audio prompt is for: continuation (it stays "
               "the first seconds, the rest is inpainted) or variation (a new take on the clip)",
               choices=("continuation", "variation")),
        Option("strength", "float", 0.6, "variation only: noise mixed into the clip (1 discards it, lower keeps "
               "more of it)", minimum=0.01, maximum=1.0),
        weights_option("folder in the hub layout (model_index.json at its root) or a hub id such as "
                       "stabilityai/stable-audio-3-small-sfx, read from the hub cache only (empty: small-sfx)"),
        device_option(),
        dtype_option(),
    )

    @classmethod
    def limit(cls, folder: Path) -> float:
        return w.sa3_max_duration(folder)

    def group_key(self, item: GenerationItem, options: Mapping[str, Any]) -> Any:
        return None if item.audio_prompt is None else item.audio_prompt.frames

    @classmethod
    def check_request(cls, options: Mapping[str, Any], *, negative_prompt: str | None,
                      audio_prompt: Audio | None) -> None:
        super().check_request(options, negative_prompt=negative_prompt, audio_prompt=audio_prompt)
        if audio_prompt is not None and (options["guidance"] > 1.0 or negative_prompt):
            raise InvalidRequest("guidance and a negative prompt apply to text-only generation: Stable Audio 3's "
                                 "audio-to-audio and inpainting pipelines have neither")

    def run_pipeline(self, items, duration, options, generators, report):
        prompts = [item.prompt for item in items for _ in range(item.candidates)]
        choice = options["scheduler"]
        stochastic = {} if choice == "shipped" else {"stochastic_sampling": choice == "pingpong"}
        scheduler = self.fresh_scheduler(**stochastic)
        steps = options["steps"] or None
        used = {"steps": steps or (8 if scheduler.config.stochastic_sampling else 100),
                "guidance": options["guidance"], "scheduler": choice}

        def on_step(pipe: Any, i: int, t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            report((i + 1) / pipe.num_timesteps, "generating")
            return tensors

        common = dict(prompt=prompts, duration=float(duration), num_inference_steps=steps, generator=generators,
                      callback_on_step_end=on_step)
        reference = items[0].audio_prompt
        if reference is None:
            negatives = [item.negative_prompt or "" for item in items for _ in range(item.candidates)]
            pipe = self.pipeline("StableAudio3Pipeline", scheduler=scheduler)
            audio = pipe(**common, guidance_scale=options["guidance"],
                         negative_prompt=negatives if any(negatives) else None).audios
            return audio, used
        import torch

        role = options[AUDIO_ROLE_OPTION]
        clips = torch.cat([prompt_audio(item.audio_prompt) for item in items for _ in range(item.candidates)])
        if role == "variation":
            pipe = self.pipeline("StableAudio3AudioToAudioPipeline", scheduler=scheduler)
            audio = pipe(**common, audio=clips, init_noise_level=options["strength"]).audios
            return audio, {**used, AUDIO_ROLE_OPTION: role, "strength": options["strength"]}
        kept = reference.duration
        if kept >= duration:
            raise InvalidRequest(f"the audio prompt ({kept:.2f} s) must be shorter than the requested {duration:g} s")
        pipe = self.pipeline("StableAudio3InpaintPipeline", scheduler=scheduler)
        audio = pipe(**common, audio=clips, mask_start_seconds=kept, mask_end_seconds=float(duration)).audios
        return audio, {**used, AUDIO_ROLE_OPTION: role, "kept_s": round(kept, 4)}


# --- Stable Audio Open 1.0 ---------------------------------------------------------------------------------
class StableAudioOpenBackend(DiffusersAudioBackend):
    name = "stable_audio_open"
    aliases = ("sao", "stable-audio-open")
    description = "Stable Audio Open 1.0 (Stability AI, 2024): latent DiT with T5 text conditioning, 44.1 kHz stereo."
    checkpoints = w.SAO
    pipeline_class = "StableAudioPipeline"
    # 1024 latent frames x 2048-sample hop at 44.1 kHz as released; a worker reads its checkpoint's own window.
    native_max_duration = 1024 * 2048 / SAMPLE_RATE
    max_duration = native_max_duration
    capabilities = Capabilities(seed=True, batch=True, candidates=True, negative_prompt=True)
    options = (
        Option("steps", "int", 100, "sampling steps (the pipeline's default is 100)", minimum=1, maximum=1000),
        Option("guidance", "float", 7.0, "classifier-free guidance scale (the pipeline's default is 7; 1 = off)",
               minimum=1.0, maximum=30.0),
        Option("scheduler", "choice", "shipped", "shipped (the weights' scheduler: cosine SDE DPM-Solver++ 2M) or "
               "dpmsolver++ (EDM DPM-Solver++ 2M, deterministic, the pipeline's declared type)",
               choices=("shipped", "dpmsolver++")),
        weights_option("folder in the hub layout (model_index.json at its root) or the hub id "
                       "stabilityai/stable-audio-open-1.0, read from the hub cache only (the default)"),
        device_option(),
        dtype_option(),
    )

    @classmethod
    def limit(cls, folder: Path) -> float:
        return w.sao_max_duration(folder)

    def group_key(self, item: GenerationItem, options: Mapping[str, Any]) -> Any:
        # Without a negative prompt the pipeline uses zero unconditional embeddings; with one, the encoded text.
        return item.negative_prompt is None

    def run_pipeline(self, items, duration, options, generators, report):
        import diffusers

        prompts = [item.prompt for item in items for _ in range(item.candidates)]
        negatives = [item.negative_prompt for item in items for _ in range(item.candidates)]
        if options["scheduler"] == "shipped":
            scheduler = self.fresh_scheduler()
        else:
            scheduler = diffusers.EDMDPMSolverMultistepScheduler.from_config(self.model.scheduler.config,
                                                                             algorithm_type="dpmsolver++")
        pipe = self.pipeline("StableAudioPipeline", scheduler=scheduler)
        steps = options["steps"]

        def on_step(step: int, t: Any, latents: Any) -> None:
            report((step + 1) / steps, "generating")

        negative = negatives if negatives[0] is not None else None  # a group has all or none (group_key)
        audio = pipe(prompt=prompts, audio_end_in_s=float(duration), num_inference_steps=steps,
                     guidance_scale=options["guidance"], negative_prompt=negative, generator=generators,
                     callback=on_step).audios
        return audio, {"steps": steps, "guidance": options["guidance"], "scheduler": options["scheduler"]}


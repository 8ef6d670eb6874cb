"""AudioGen (text to sound) and MusicGen (text to music) backends, both served through audiocraft.

Seeds: every item of a batch samples its tokens from its own generator seeded with the item's seed (see
`sampling`), and each clip is decoded on its own, so a clip made in a batch equals the clip a single request with
the same prompt, seed, duration and options makes, which equals a direct audiocraft call right after
`torch.manual_seed(seed)`. The batch is split into groups of equal audio-prompt length, each one batched call.

Tokens come from our decode loop (`decode_loop`, static KV cache, CUDA graphs on a GPU) unless the worker was
started with `decoder=audiocraft`; both give the same tokens for the same seed (tests/audiogen/test_decoder.py).
Our loop conditions each clip on its own text and masks the padding keys, so texts of any token length share a
batch; audiocraft's cross-attention has no padding mask (padding would change the result), so with
`decoder=audiocraft` the groups are also split by conditioning shape.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tagcore import Audio, Backend, Capabilities, GenerationItem, GenerationResult, Option, WeightsStatus
from tagcore.backend import ProgressCallback
from tagcore.devices import quiet_model_loading, resolve_device, resolve_dtype
from tagcore.errors import InvalidRequest, WeightsMissing
from tagcore.options import device_option, dtype_option, weights_option
from tagcore.weights import WeightsSource

from .loading import (cached_hub_files, check_checkpoint_files, check_text_encoders,
                      checkpoint_loading, explain_load_error, missing_message, resolve_source,
                      uncached_text_encoders_message)
from .cuda_graphs import GraphRunner
from .decode_loop import EagerSteps, Steps, generate_tokens, window_length
from .decoder import StaticLM, unsupported_features
from .sampling import SamplingParams, row_generators

log = logging.getLogger(__name__)


def _sampling_options(top_k: int, extend_stride: float) -> tuple[Option, ...]:
    """Request options shared by both models, with audiocraft's own defaults."""
    return (
        Option("top_k", "int", top_k, "sample among the k most likely tokens (0: no top-k)", minimum=0, maximum=4096),
        Option("top_p", "float", 0.0, "nucleus sampling mass; when > 0 it replaces top_k", minimum=0.0,
               maximum=1.0),
        Option("temperature", "float", 1.0, "softmax temperature (0: greedy decoding)", minimum=0.0, maximum=10.0),
        Option("cfg_coef", "float", 3.0, "classifier-free guidance strength (how closely to follow the text)",
               minimum=0.0, maximum=30.0, aliases=("guidance",)),
        Option("extend_stride", "float", extend_stride, "seconds added per window beyond the model's native length",
               minimum=0.5, maximum=30.0),
    )


def _worker_options(default_hub_id: str) -> tuple[Option, ...]:
    return (
        weights_option(f"folder with state_dict.bin + compression_state_dict.bin, or a hub id "
                       f"(empty: {default_hub_id})"),
        Option("decoder", "choice", "tag", "token loop: tag (ours: static KV cache, CUDA graphs on a GPU) or "
               "audiocraft (audiocraft's own loop, for comparison)", choices=("tag", "audiocraft"), scope="worker"),
        Option("warmup", "str", "", "CUDA, decoder=tag: batch sizes whose graphs are captured at load, e.g. 1,4,16 "
               "(others are captured on their first request)", scope="worker"),
        Option("trust_checkpoint", "bool", False, "allow checkpoints whose config is a pickled omegaconf object "
               "(only for files from a source you trust)", scope="worker"),
        device_option(),
        dtype_option(),
    )


class AudiocraftBackend(Backend):
    """Shared loading and generation for audiocraft's autoregressive models (AudioGen, MusicGen)."""

    default_hub_id: ClassVar[str]
    audiocraft_class: ClassVar[str]
    """The model's class in `audiocraft.models` (`AudioGen`, `MusicGen`): its `get_pretrained` loads the weights."""
    capabilities = Capabilities(seed=True, batch=True, audio_prompt=True)
    static_lm: StaticLM | None = None
    """Our decode loop's view of the loaded LM (None: decoder=audiocraft)."""
    graphs: GraphRunner | None = None
    """CUDA graphs and caches of our decode loop (CUDA and decoder=tag only)."""

    # --- loading ------------------------------------------------------------------------------------------
    @classmethod
    def _source(cls, settings: Mapping[str, Any]) -> WeightsSource:
        return resolve_source(str(settings.get("weights") or ""), cls.default_hub_id)

    @classmethod
    def weights_status(cls, settings: Mapping[str, Any]) -> WeightsStatus:
        source = cls._source(settings)
        if not source.local:
            cached = cached_hub_files(source.where)
            present = len(cached) == 2
            detail = "in the hub cache" if present else "not cached: downloaded from the hub on first load"
            return WeightsStatus(present, f"hub:{source.where}", detail)
        missing = source.missing()
        if missing:
            return WeightsStatus(False, source.where, missing_message(source, missing, cls.default_hub_id))
        detail = uncached_text_encoders_message(Path(source.where))
        return WeightsStatus(not detail, source.where, detail)

    @property
    def model_id(self) -> str:
        return self._source(self.settings).model_id

    def load(self) -> None:
        import torch

        with quiet_model_loading():  # audiocraft imports xformers
            from audiocraft import models
            from audiocraft.utils.autocast import TorchAutocast

        source = self._source(self.settings)
        trust = bool(self.settings["trust_checkpoint"])
        if source.local:
            missing = source.missing()
            if missing:
                raise WeightsMissing(missing_message(source, missing, self.default_hub_id))
            check_checkpoint_files(source, trust, self.default_hub_id)
        device = resolve_device(self.settings["device"])
        dtype = resolve_dtype(self.settings["dtype"], device)
        if device.type == "cpu" and dtype != torch.float32:
            raise InvalidRequest("audiocraft models run in fp32 on the CPU; use dtype=fp32 (or auto)")
        try:
            with checkpoint_loading(trust), quiet_model_loading():
                model = getattr(models, self.audiocraft_class).get_pretrained(source.where, device=str(device))
        except Exception as exc:
            explained = explain_load_error(exc, source, self.default_hub_id, trust)
            if explained is None:
                raise
            raise explained from exc
        check_text_encoders(model)
        if device.type == "cuda":
            model.lm.to(dtype)
        self.static_lm, self.graphs = None, None
        if self.settings["decoder"] == "tag":
            problems = unsupported_features(model.lm)
            if problems:
                raise InvalidRequest(f"this checkpoint uses {'; '.join(problems)}, which decoder=tag does not "
                                     f"implement; start the worker with -O decoder=audiocraft")
            self.static_lm = StaticLM(model.lm)
            if device.type == "cuda":
                positions = window_length(model.lm, int(model.max_duration * model.frame_rate)) - 1
                self.graphs = GraphRunner(self.static_lm, positions, dtype, device,
                                          dtype if dtype != torch.float32 else None)
                log.info("audiogen: the key/value cache of one clip's %d-step window takes %.3f GiB; up to batch "
                         "%d fits now", positions, self.graphs.bytes_needed(1, 64) / 2**30,
                         self.graphs.largest_batch())
        model.autocast = TorchAutocast(enabled=device.type == "cuda" and dtype != torch.float32,
                                       device_type=device.type, dtype=dtype)
        self.model = model
        self.device = device
        self.window = float(model.max_duration)
        batches = str(self.settings["warmup"])
        try:
            sizes = [int(b) for b in batches.replace(" ", "").split(",") if b]
        except ValueError:
            raise InvalidRequest(f"warmup: {batches!r} is not a comma-separated list of batch sizes") from None
        self.warm_up([(self.window, size) for size in sizes])

    def warm_up(self, shapes: Sequence[tuple[float, int]]) -> float:
        """Capture the CUDA graphs of these batch sizes now (a full-window request each, which covers every
        shorter length), so that their caches are allocated and their first real request pays no capture;
        returns the seconds spent (none without graphs)."""
        if self.graphs is None:
            return 0.0
        options = self.resolve_request_options({})
        spent = 0.0
        for size in sorted({batch for _, batch in shapes}):
            started = time.perf_counter()
            self.generate_batch([GenerationItem("warm up", 0)] * size, self.window, options=options)
            took = time.perf_counter() - started
            spent += took
            log.info("audiogen: graphs for batch %d captured in %.1f s", size, took)
        return spent

    def unload(self) -> None:
        self.model = None
        self.static_lm = None
        self.graphs = None
        super().unload()

    # --- generation ---------------------------------------------------------------------------------------
    def generate_batch(self, items: Sequence[GenerationItem], duration: float, *, options: Mapping[str, Any],
                       progress: ProgressCallback | None = None) -> list[GenerationResult]:
        model = self.model
        if duration > self.window and options["extend_stride"] >= self.window:
            raise InvalidRequest(f"extend_stride must be shorter than the model's {self.window:g} s window")
        if options["top_k"] > model.lm.card:
            raise InvalidRequest(f"top_k must be at most the model's {model.lm.card} codes")
        for item in items:
            if item.audio_prompt is not None and item.audio_prompt.duration >= duration:
                raise InvalidRequest(f"the audio prompt ({item.audio_prompt.duration:.2f} s) must be shorter than "
                                     f"the requested {duration:g} s")
        # The stride only matters beyond the window; audiocraft still insists it is shorter than the window.
        stride = float(options["extend_stride"]) if duration > self.window else min(float(options["extend_stride"]),
                                                                                    self.window / 2)
        model.set_generation_params(use_sampling=True, top_k=int(options["top_k"]), top_p=float(options["top_p"]),
                                    temperature=float(options["temperature"]), duration=float(duration),
                                    cfg_coef=float(options["cfg_coef"]), extend_stride=stride)
        groups = self._groups(items)
        results: dict[int, GenerationResult] = {}
        for number, indices in enumerate(groups):
            started = time.perf_counter()
            members = [items[i] for i in indices]
            clips = self._generate_group(members, duration, number, len(groups), options, progress)
            elapsed = time.perf_counter() - started
            for index, item, clip in zip(indices, members, clips):
                results[index] = GenerationResult(
                    [clip], item.seed, self.name, self.model_id, {"generate_s": elapsed / len(members)},
                    {"top_k": options["top_k"], "top_p": options["top_p"], "temperature": options["temperature"],
                     "cfg_coef": options["cfg_coef"], "window_s": self.window, "batch_rows": len(members)})
        return [results[i] for i in range(len(items))]

    def _groups(self, items: Sequence[GenerationItem]) -> list[list[int]]:
        """Indices of items that can share one forward pass without changing any of their results."""
        from audiocraft.modules.conditioners import ConditioningAttributes

        provider = self.model.lm.condition_provider
        groups: dict[tuple, list[int]] = defaultdict(list)
        for index, item in enumerate(items):
            shape: tuple = ()
            if self.static_lm is None:  # our loop masks each clip's own text length; audiocraft's pads them
                tokenized = provider.tokenize([ConditioningAttributes(text={"description": item.prompt.strip()
                                                                        or None})])
                shape = tuple(sorted((name, tuple(_tensor_shapes(value))) for name, value in tokenized.items()))
            prompt_frames = -1 if item.audio_prompt is None else self._prompt_frames(item.audio_prompt)
            groups[(shape, prompt_frames)].append(index)
        return list(groups.values())

    def _prompt_frames(self, audio: Audio) -> int:
        return int(round(audio.duration * self.model.sample_rate))

    def _prompt_tensor(self, audio: Audio) -> Any:
        """An audio prompt at the model's rate and channel count, shaped [1, C, T]."""
        import torch
        from audiocraft.data.audio_utils import convert_audio

        wav = torch.from_numpy(np.ascontiguousarray(audio.samples))[None]
        wav = convert_audio(wav, audio.sample_rate, self.model.sample_rate, self.model.audio_channels)
        frames = self._prompt_frames(audio)
        return torch.nn.functional.pad(wav, (0, max(0, frames - wav.shape[-1])))[..., :frames].to(self.device)

    def _generate_group(self, members: list[GenerationItem], duration: float, number: int, total: int,
                        options: Mapping[str, Any], progress: ProgressCallback | None) -> list[Audio]:
        import torch
        from audiocraft.modules.conditioners import ConditioningAttributes

        model = self.model
        attributes = [ConditioningAttributes(text={"description": item.prompt.strip() or None}) for item in members]
        prompt_tokens = None
        prompts = [item.audio_prompt for item in members if item.audio_prompt is not None]
        with torch.no_grad():
            if prompts:  # the worker groups clips by whether they have an audio prompt: here all of them do
                # Encoded one by one: a batched encode may round differently and change the prompt's tokens.
                prompt_tokens = torch.cat([model.compression_model.encode(self._prompt_tensor(prompt))[0]
                                           for prompt in prompts], dim=0)

        # audiocraft reports (tokens so far, tokens of the current window) and adds earlier windows to the first
        # number only, so the fraction is taken against the whole clip's token count.
        clip_tokens = max(1, int(duration * model.frame_rate))

        def report(generated: int, _window_tokens: int) -> None:
            if progress is not None:
                progress(min(1.0, (number + min(1.0, generated / clip_tokens)) / total), "generating")

        seeds = [item.seed for item in members]
        model.set_custom_progress_callback(report)
        try:
            if self.static_lm is None:
                torch.manual_seed(seeds[0])
                with row_generators(seeds, self.device):
                    tokens = model._generate_tokens(attributes, prompt_tokens, progress is not None)
            else:
                tokens = self._our_tokens(attributes, prompt_tokens, seeds, options, report)
            if progress is not None:
                progress((number + 1) / total, "generating")
            with torch.no_grad():
                # Decoded one by one for the same reason: a clip must not depend on its batch neighbours.
                wavs = [model.generate_audio(tokens[b:b + 1])[0] for b in range(tokens.shape[0])]
        finally:
            model.set_custom_progress_callback(None)
        frames = self.frames_for(duration)
        clips = []
        for wav in wavs:
            if model.sample_rate != self.sample_rate:  # a fine-tune at another rate still honours our contract
                from audiocraft.data.audio_utils import convert_audio

                wav = convert_audio(wav.float(), model.sample_rate, self.sample_rate, wav.shape[0])
            samples = wav.detach().float().cpu().numpy()
            if samples.shape[-1] < frames:
                samples = np.pad(samples, ((0, 0), (0, frames - samples.shape[-1])))
            clips.append(Audio(np.clip(samples[:, :frames], -1.0, 1.0), self.sample_rate))
        return clips


    def _our_tokens(self, attributes: list[Any], prompt_tokens: Any, seeds: list[int], options: Mapping[str, Any],
                    report: Any) -> Any:
        """Tokens from our decode loop; row b samples from a generator seeded with `seeds[b]`, which is what a
        direct audiocraft call right after `torch.manual_seed(seeds[b])` draws from."""
        import torch

        params = SamplingParams(use_sampling=True, temperature=float(options["temperature"]),
                                top_k=int(options["top_k"]), top_p=float(options["top_p"]),
                                cfg_coef=float(options["cfg_coef"]))
        generators = [torch.Generator(device=self.device).manual_seed(int(seed)) for seed in seeds]
        steps: Steps
        if self.graphs is not None:
            steps = self.graphs.steps(params)
        elif self.static_lm is not None:
            steps = EagerSteps(self.static_lm, params, next(self.model.lm.parameters()).dtype, self.device)
        else:
            raise RuntimeError("our decode loop runs on a loaded model only")
        return generate_tokens(self.model, steps, attributes, prompt_tokens, params, generators, report)


def _tensor_shapes(value: Any) -> list[tuple[int, ...]]:
    """Shapes of every tensor inside a tokenizer output (tensor, tuple or dict), in a stable order."""
    if hasattr(value, "shape"):
        return [tuple(value.shape)]
    if isinstance(value, Mapping):
        return [s for key in sorted(value) for s in _tensor_shapes(value[key])]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _tensor_shapes(v)]
    return []


class AudioGenBackend(AudiocraftBackend):
    """Meta's AudioGen-medium: text to environmental sound, 16 kHz mono, trained on 10 s clips."""

    name, audiocraft_class, default_hub_id = "audiogen", "AudioGen", "facebook/audiogen-medium"
    description = "AudioGen (audiocraft): text to sound effects, 16 kHz; longer clips by windowed extension"
    sample_rate, native_max_duration, max_duration = 16000, 10.0, 60.0
    options = (*_sampling_options(250, extend_stride=2.0), *_worker_options(default_hub_id))


class MusicGenBackend(AudiocraftBackend):
    """Meta's MusicGen (small by default): text to music, 32 kHz, trained on 30 s clips."""

    name, audiocraft_class, default_hub_id = "musicgen", "MusicGen", "facebook/musicgen-small"
    description = "MusicGen (audiocraft): text to music, 32 kHz; longer clips by windowed extension"
    sample_rate, native_max_duration, max_duration = 32000, 30.0, 120.0
    options = (*_sampling_options(250, extend_stride=18.0), *_worker_options(default_hub_id))

"""Suno Bark (suno/bark-small, suno/bark) through transformers' BarkModel: expressive multilingual speech.

Bark is three GPT models in a row (text -> semantic tokens -> coarse EnCodec codes -> fine codes) and an EnCodec
decoder at 24 kHz. A voice preset (speaker prompt) fixes the speaker; without one the voice is drawn at random
from the seed. Every stage samples from torch's generator, seeded per request (base.py), so the same request and
seed give the same clip; requests are never batched together, since that would change what each one samples.
"""
from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tagcore import Capabilities, GenerationItem, Option
from tagcore.backend import WeightsStatus
from tagcore.errors import ConfigError, InvalidRequest, WeightsMissing
from tagcore.options import device_option, dtype_option, weights_option

from .base import PAUSE_OPTION, SpeechBackend
from tagcore.weights import WeightsSource

from . import weights
from .weights import MODEL_WEIGHTS

DEFAULT_MODEL = "suno/bark-small"
MODEL_FILES = ("config.json", "generation_config.json", MODEL_WEIGHTS, ("tokenizer.json", "vocab.txt"))
PRESETS_FILE = "speaker_embeddings_path.json"
DEFAULT_PRESET = "v2/en_speaker_6"
NO_PRESET = "none"
PROMPT_KEYS = ("semantic_prompt", "coarse_prompt", "fine_prompt")
MIN_SEMANTIC_TOKENS = 10
"""About 0.2 s: a sentence never comes out empty (EnCodec cannot decode a handful of frames)."""
OVERSHOOT_SECONDS = 0.5
"""Semantic tokens are capped a little beyond the requested duration, so that a sentence cut by the cap is seen
as too long (and reported as truncated) rather than delivered as if complete."""


class BarkBackend(SpeechBackend):
    name = "bark"
    aliases = ("suno_bark",)
    description = "Expressive speech in many languages (Suno Bark); request option voice_preset picks the speaker"
    sample_rate = 24000
    native_max_duration = 14.0  # 768 semantic tokens at 49.9 per second: one Bark generation
    max_sentence_chars = 150
    """About 10 s of speech: a longer sentence would run into Bark's 768-token limit and stop mid-word."""
    capabilities = Capabilities(seed=True, batch=False)
    options = (
        PAUSE_OPTION,
        Option("voice_preset", "str", DEFAULT_PRESET, "speaker prompt of the model folder (e.g. v2/en_speaker_0-9, "
               f"v2/de_speaker_3); `{NO_PRESET}` lets the seed pick a random voice"),
        Option("semantic_temperature", "float", 0.7, "sampling temperature of the text-to-semantic model (higher "
               "is more varied, lower more monotone)", minimum=0.05, maximum=1.5),
        Option("coarse_temperature", "float", 0.7, "sampling temperature of the coarse acoustic model",
               minimum=0.05, maximum=1.5),
        weights_option(f"Bark model: a save_pretrained folder or a hub id (default {DEFAULT_MODEL})"),
        device_option(),
        dtype_option(),
    )

    @classmethod
    def _source(cls, settings: Mapping[str, Any]) -> WeightsSource:
        return weights.locate("Bark model", settings.get("weights", ""), DEFAULT_MODEL, MODEL_FILES)

    @classmethod
    def weights_status(cls, settings: Mapping[str, Any]) -> WeightsStatus:
        source = cls._source(settings)
        present, detail = source.status()
        return WeightsStatus(present, source.where, detail)

    @property
    def model_id(self) -> str:
        return f"bark:{self._source(self.settings).where}"

    def load(self) -> None:
        from transformers import BarkModel, BarkProcessor

        self._setup_device()
        source = self._source(self.settings)
        # Resolve the hub id to its snapshot folder once: processor, model and voice presets all load from it.
        self.folder = Path(weights.load(source, str, DEFAULT_MODEL))
        folder = source.at(self.folder)
        self.processor = weights.load(folder, BarkProcessor.from_pretrained, DEFAULT_MODEL)
        model = weights.load(folder, lambda p: BarkModel.from_pretrained(p, dtype=self.dtype), DEFAULT_MODEL)
        self.model = model.to(self.device).eval()
        rate = int(getattr(self.model.generation_config, "sample_rate", 0) or 0)
        if rate != self.sample_rate:
            raise ConfigError(f"{source.where} makes {rate} Hz audio; the bark backend serves {self.sample_rate} Hz "
                              "Bark models")
        semantic = getattr(self.model.generation_config, "semantic_config", None)
        if semantic is None:
            raise ConfigError(f"{source.where} has no semantic_config in its generation config: not a Bark model")
        self.semantic_rate = float(semantic["semantic_rate_hz"])
        self.semantic_limit = int(semantic["max_new_tokens"])

    def unload(self) -> None:
        for attr in ("model", "processor"):
            self.__dict__.pop(attr, None)
        super().unload()

    @property
    def presets(self) -> list[str]:
        """Voice presets listed in the folder's speaker_embeddings_path.json (empty without one)."""
        return list(self.processor.available_voice_presets)

    def _history_prompt(self, preset: str) -> dict[str, np.ndarray] | None:
        """The speaker prompt arrays of `preset`, checked file by file; None for `none`."""
        if preset == NO_PRESET:
            return None
        known = self.presets
        if not known:
            raise InvalidRequest(f"the Bark model in {self.folder} has no voice presets (no {PRESETS_FILE}); "
                                 f"use voice_preset={NO_PRESET}")
        if preset not in known:
            shown = ", ".join(known[:12]) + (f" and {len(known) - 12} more" if len(known) > 12 else "")
            raise InvalidRequest(f"unknown Bark voice preset {preset!r}; this model has {shown} "
                                 f"(or {NO_PRESET} for a random voice)")
        paths = self.processor.speaker_embeddings[preset]
        arrays = {}
        for key in PROMPT_KEYS:
            path = self.folder / str(paths.get(key, ""))
            if not path.is_file():
                raise WeightsMissing(f"voice preset {preset}: {path} is missing; re-download the model folder with "
                                     f"`hf download {DEFAULT_MODEL} --local-dir {self.folder}`")
            try:
                arrays[key] = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise WeightsMissing(f"voice preset {preset}: {path} is unsafe or corrupt, not a plain .npy array "
                                     f"({exc}); "
                                     f"re-download it with `hf download {DEFAULT_MODEL} --local-dir {self.folder}`"
                                     ) from exc
        return arrays

    def _speak(self, sentences: list[str], item: GenerationItem, duration: float,
               options: Mapping[str, Any]) -> tuple[list[np.ndarray], dict[str, Any]]:
        import torch

        preset = str(options["voice_preset"]).strip() or NO_PRESET
        history = self._history_prompt(preset)
        try:
            inputs = self.processor(text=sentences, voice_preset=history)
        except (ValueError, TypeError) as exc:  # a preset array of the wrong shape
            raise WeightsMissing(f"voice preset {preset} in {self.folder} is malformed: {exc}") from exc
        kwargs = {k: v.to(self.device) for k, v in inputs.items() if k != "history_prompt"}
        if history is not None:
            kwargs["history_prompt"] = {k: v.to(self.device) for k, v in inputs["history_prompt"].items()}
        cap = min(self.semantic_limit, math.ceil((duration + OVERSHOOT_SECONDS) * self.semantic_rate))
        with torch.inference_mode(), _quiet_generation_warnings():
            waves, lengths = self.model.generate(
                **kwargs, return_output_lengths=True, semantic_max_new_tokens=cap,
                semantic_min_new_tokens=min(MIN_SEMANTIC_TOKENS, cap), semantic_do_sample=True,
                semantic_temperature=float(options["semantic_temperature"]), coarse_do_sample=True,
                coarse_temperature=float(options["coarse_temperature"]))
        waves = waves.float().cpu().numpy().reshape(len(sentences), -1)
        voice = f"preset {preset}" if history is not None else "random (no preset; follows the seed)"
        return [waves[i, :int(n)] for i, n in enumerate(lengths)], {"voice": voice}


@contextlib.contextmanager
def _quiet_generation_warnings() -> Iterator[None]:
    """Silence transformers' generic generate() warnings for one Bark call.

    BarkModel.generate passes its own generation configs together with keyword arguments and feeds the coarse model
    right-padded batches without an attention mask by design (as the original Bark does); transformers warns about
    both on every request, which would flood a worker's log without saying anything about the request.
    """
    logger = logging.getLogger("transformers.generation.utils")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)

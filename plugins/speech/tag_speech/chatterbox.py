"""Resemble AI's Chatterbox (chatterbox-tts): zero-shot voice cloning from a few seconds of someone speaking.

Chatterbox is a 0.5B Llama-style model (T3) that turns text into speech tokens, conditioned on a speaker
embedding, speech tokens of the voice sample and an emotion-exaggeration value; S3Gen (flow matching + HiFT
vocoder) turns them into 24 kHz audio in the voice of the sample. Unlike SpeechT5's x-vector conditioning it copies
the timbre and delivery of the sample, not only coarse traits.

Inference goes through the package's own `ChatterboxTTS` (loading, conditioning, sampling, the Perth
watermark), so the output equals `ChatterboxTTS.generate` for the same seed; this module adds the TAG parts:
checked voice samples, sentence splitting and assembly, the default voice restored between requests, and weight
locations that name what is missing. Every clip carries Resemble AI's inaudible Perth watermark (kept on).
"""
from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tagcore import Capabilities, GenerationItem, Option
from tagcore.audio_types import Audio
from tagcore.backend import WeightsStatus
from tagcore.devices import resolve_device
from tagcore.errors import InvalidRequest, WeightsMissing
from tagcore.options import device_option, dtype_option, weights_option

from .base import PAUSE_OPTION, SpeechBackend
from .voice import MAX_PROMPT_SECONDS, usable_sample
from tagcore.weights import WeightsSource

from . import weights

DEFAULT_MODEL = "ResembleAI/chatterbox"
MODEL_FILES = {
    "english": ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json"),
    "multilingual": ("ve.pt", "t3_mtl23ls_v2.safetensors", "s3gen.pt", "grapheme_mtl_merged_expanded_v1.json"),
}
"""What `ChatterboxTTS.from_local` / `ChatterboxMultilingualTTS.from_local` read (the hub repository holds both)."""
DEFAULT_VOICE_FILE = "conds.pt"
"""The model's built-in voice (precomputed conditionals); optional: without it every request needs a sample."""
MIN_VOICE_SECONDS = 5.0
"""Chatterbox conditions on up to 6 s (T3) and 10 s (S3Gen) of the sample; shorter samples copy the voice badly."""


class ChatterboxBackend(SpeechBackend):
    name = "chatterbox"
    description = ("Speech that clones a voice from a 5-60 s audio prompt (Resemble AI Chatterbox; 23 languages "
                   "with -O model=multilingual)")
    sample_rate = 24000
    native_max_duration = 40.0  # ChatterboxTTS.generate samples at most 1000 speech tokens (25 per second)
    capabilities = Capabilities(seed=True, batch=False, audio_prompt=True, audio_prompt_role="voice",
                                max_audio_prompt=MAX_PROMPT_SECONDS)
    options = (
        PAUSE_OPTION,
        Option("exaggeration", "float", 0.5, "emotion exaggeration: 0.5 is neutral, higher is more dramatic "
               "(and faster)", minimum=0.0, maximum=2.0),
        Option("cfg_weight", "float", 0.5, "classifier-free guidance weight: lower slows the pace and follows "
               "the voice sample's delivery less strictly (chatterbox-tts 0.1.7 fails without guidance, so at "
               "least 0.05)", minimum=0.05, maximum=1.0),
        Option("temperature", "float", 0.8, "sampling temperature of the speech tokens", minimum=0.05,
               maximum=2.0),
        Option("language", "str", "en", "language of the text (ISO 639-1: en, de, fr, zh...); other than en "
               "needs the multilingual model"),
        Option("model", "choice", "english", "which Chatterbox: the English one, or the 23-language one",
               choices=tuple(MODEL_FILES), scope="worker"),
        weights_option(f"Chatterbox files (English: ve/t3_cfg/s3gen .safetensors + tokenizer.json; multilingual: "
                       f"ve.pt, t3_mtl23ls_v2.safetensors, s3gen.pt, grapheme_mtl_merged_expanded_v1.json; both: "
                       f"conds.pt): a folder or a hub id (default {DEFAULT_MODEL})"),
        device_option(),
        dtype_option(choices=("auto", "fp32")),
    )

    @classmethod
    def _source(cls, settings: Mapping[str, Any]) -> WeightsSource:
        return weights.locate("Chatterbox model", settings.get("weights", ""), DEFAULT_MODEL, cls._files(settings))

    @staticmethod
    def _files(settings: Mapping[str, Any]) -> tuple[str, ...]:
        """The files of the configured model (English or multilingual), each one required."""
        return MODEL_FILES[settings.get("model") or "english"]

    @classmethod
    def weights_status(cls, settings: Mapping[str, Any]) -> WeightsStatus:
        source = cls._source(settings)
        if source.local:
            present, detail = source.status()
            if present and not (Path(source.where) / DEFAULT_VOICE_FILE).is_file():
                detail += f" (no {DEFAULT_VOICE_FILE}: every request needs a voice sample)"
            return WeightsStatus(present, source.where, detail)
        from huggingface_hub import try_to_load_from_cache

        cached = all(isinstance(try_to_load_from_cache(source.where, name), str) for name in cls._files(settings))
        detail = (f"Chatterbox model: {source.where} (hub cache)" if cached else
                  f"Chatterbox model: {source.where} is not downloaded yet; run `{weights.fetch_hint(source.where)}`")
        return WeightsStatus(cached, source.where, detail)

    @property
    def model_id(self) -> str:
        return f"chatterbox-{self.settings['model']}:{self._source(self.settings).where}"

    def load(self) -> None:
        from chatterbox.mtl_tts import ChatterboxMultilingualTTS
        from chatterbox.tts import ChatterboxTTS

        # The package builds and runs every module in float32 (its conditioning tensors are float32 too).
        self.device = resolve_device(self.settings["device"])
        self.multilingual = self.settings["model"] == "multilingual"
        model_class = ChatterboxMultilingualTTS if self.multilingual else ChatterboxTTS
        source = self._source(self.settings).at(self._folder())
        self.model = weights.load(source, lambda path: self._from_local(model_class, path), DEFAULT_MODEL)
        self.default_conds = self.model.conds

    def _from_local(self, model_class: Any, path: str) -> Any:
        """`model_class.from_local`, naming the one download the multilingual tokenizer makes by itself."""
        import requests

        try:
            return model_class.from_local(path, str(self.device))
        except requests.RequestException as exc:
            raise WeightsMissing(
                "the multilingual Chatterbox tokenizer loads spacy-pkuseg's Chinese word segmenter, whose model "
                "spacy-pkuseg downloads from GitHub on first use into ~/.pkuseg (or $PKUSEG_HOME), and that "
                f"download failed ({type(exc).__name__}): load the model once while online") from exc

    def _folder(self) -> str:
        """The local folder, or the hub cache folder of the repository's files (downloaded when online)."""
        source = self._source(self.settings)
        if source.local:
            return source.where
        from huggingface_hub import hf_hub_download

        try:
            paths = [hf_hub_download(source.where, name) for name in self._files(self.settings)]
        except Exception as exc:  # offline, unknown repository, network or disk errors alike
            raise WeightsMissing(
                f"Chatterbox model {source.where} is neither a local folder nor in the hub cache, and could not be "
                f"downloaded ({type(exc).__name__}): run `{weights.fetch_hint(source.where)}` while online, or pass "
                "a local folder"
            ) from exc
        try:
            hf_hub_download(source.where, DEFAULT_VOICE_FILE)
        except Exception:  # the default voice is optional: requests with a sample still work
            pass
        return str(Path(paths[0]).parent)

    def unload(self) -> None:
        for attr in ("model", "default_conds"):
            self.__dict__.pop(attr, None)
        super().unload()

    def check_voice_sample(self, sample: Audio) -> None:
        """Reject a sample that cannot carry a voice before any model work (too short, silent, mostly silence)."""
        usable_sample(sample, min_seconds=MIN_VOICE_SECONDS)

    def _language(self, language: str) -> dict[str, str]:
        """The generate() keyword for `language`, or an InvalidRequest naming what this model speaks."""
        from chatterbox.mtl_tts import SUPPORTED_LANGUAGES

        code = language.strip().lower()
        if not self.multilingual:
            if code != "en":
                raise InvalidRequest(f"the English Chatterbox speaks only en, not {language!r}: start the worker "
                                     "with -O model=multilingual for other languages")
            return {}
        if code not in SUPPORTED_LANGUAGES:
            raise InvalidRequest(f"Chatterbox does not speak {language!r}; it knows "
                                 f"{', '.join(sorted(SUPPORTED_LANGUAGES))}")
        return {"language_id": code}

    def _condition(self, item: GenerationItem, exaggeration: float) -> str:
        """Set the model's conditionals for this request; return a description of the voice."""
        if item.audio_prompt is None:
            if self.default_conds is None:
                raise InvalidRequest(f"this Chatterbox folder has no default voice ({DEFAULT_VOICE_FILE}): send a "
                                     f"voice sample of {MIN_VOICE_SECONDS:g}-{MAX_PROMPT_SECONDS:g} s")
            # generate() replaces conds.t3 when the exaggeration changes: hand it a fresh wrapper every time.
            self.model.conds = type(self.default_conds)(self.default_conds.t3, self.default_conds.gen)
            return "default"
        sample = item.audio_prompt.mono()
        with tempfile.TemporaryDirectory(prefix="tag-chatterbox-") as tmp:
            # prepare_conditionals reads a file; float WAV keeps the samples exactly as received.
            import soundfile as sf

            path = Path(tmp) / "voice.wav"
            sf.write(path, sample.samples[0].astype(np.float32), sample.sample_rate, subtype="FLOAT")
            self.model.prepare_conditionals(str(path), exaggeration=exaggeration)
        return f"cloned from sample ({sample.duration:.1f} s)"

    def _speak(self, sentences: list[str], item: GenerationItem, duration: float,
               options: Mapping[str, Any]) -> tuple[list[np.ndarray], dict[str, Any]]:
        language = self._language(options["language"])
        voice = self._condition(item, options["exaggeration"])
        waves = [self.model.generate(sentence, **language, exaggeration=options["exaggeration"],
                                     cfg_weight=options["cfg_weight"], temperature=options["temperature"])
                 for sentence in sentences]
        return [w[0].float().cpu().numpy() for w in waves], {"voice": voice, "watermark": "perth",
                                                             "language": options["language"].strip().lower()}

"""MMS-TTS (Meta's Massively Multilingual Speech VITS models, facebook/mms-tts-<iso3>): ~1100 languages.

Models of languages written in non-Latin scripts (their tokenizer says is_uroman) read romanised text: the
backend romanises with uroman (language-aware, using the model's ISO 639-3 code) before tokenising.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from tagcore import GenerationItem, Option
from tagcore.backend import WeightsStatus
from tagcore.errors import InvalidRequest
from tagcore.options import device_option, dtype_option, weights_option

from .base import PAUSE_OPTION, SpeechBackend
from tagcore.weights import WeightsSource

from . import weights
from .weights import MODEL_WEIGHTS

HUB_PREFIX = "facebook/mms-tts-"
MODEL_FILES = ("config.json", MODEL_WEIGHTS, "vocab.json")
LANGUAGES_URL = "https://dl.fbaipublicfiles.com/mms/tts/all-tts-languages.html"
_ISO3 = re.compile(r"^[a-z]{3}$")


def hub_id_for(language: str) -> str:
    """facebook/mms-tts-<language>; the language must be an ISO 639-3 code (three lower-case letters)."""
    if not _ISO3.match(language):
        raise InvalidRequest(f"language {language!r} is not an ISO 639-3 code (three letters such as eng, deu, "
                             f"fra, swh); MMS-TTS languages are listed at {LANGUAGES_URL}")
    return HUB_PREFIX + language


class MmsTtsBackend(SpeechBackend):
    name = "mms_tts"
    aliases = ("mms",)
    description = "Speech in ~1100 languages from text (MMS-TTS / VITS); worker option language picks the model"
    sample_rate = 16000
    options = (
        PAUSE_OPTION,
        Option("speaking_rate", "float", 1.0, "speed of speech (above 1 is faster)", minimum=0.5, maximum=2.0),
        Option("language", "str", "eng", "ISO 639-3 code; selects the hub model facebook/mms-tts-<language> "
               "when `weights` is not set", scope="worker"),
        weights_option("MMS-TTS model: a save_pretrained folder or a hub id (default from `language`)"),
        device_option(),
        dtype_option(),
    )

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(settings)
        self.source = self._source(self.settings)

    @classmethod
    def _source(cls, settings: Mapping[str, Any]) -> WeightsSource:
        default = hub_id_for(str(settings.get("language") or "eng"))
        return weights.locate("MMS-TTS model", settings.get("weights", ""), default, MODEL_FILES)

    @classmethod
    def weights_status(cls, settings: Mapping[str, Any]) -> WeightsStatus:
        source = cls._source(settings)
        present, detail = source.status()
        if not present and not source.local:
            detail += f"; languages: {LANGUAGES_URL}"
        return WeightsStatus(present, source.where, detail)

    @property
    def model_id(self) -> str:
        return f"mms_tts:{self.source.where}"

    def load(self) -> None:
        from transformers import VitsModel, VitsTokenizer

        self._setup_device()
        default = hub_id_for(self.settings["language"])
        self.tokenizer = weights.load(self.source, VitsTokenizer.from_pretrained, default)
        model = weights.load(self.source, lambda p: VitsModel.from_pretrained(p, dtype=self.dtype), default)
        self.model = model.to(self.device).eval()
        if self.model.config.sampling_rate != self.sample_rate:
            raise InvalidRequest(f"{self.source.where} makes {self.model.config.sampling_rate} Hz audio; the "
                                 f"mms_tts backend serves {self.sample_rate} Hz MMS models")
        self.language = getattr(self.tokenizer, "language", None) or self.settings["language"]
        self.romanizer = self._romanizer() if getattr(self.tokenizer, "is_uroman", False) else None

    @staticmethod
    def _romanizer() -> Any:
        """A uroman romanizer, built once per load: models of non-Latin scripts (is_uroman) were trained on
        romanised text. (The tokenizer would otherwise rebuild one, ~4 s, for every sentence.)"""
        from uroman import Uroman

        return Uroman()

    def unload(self) -> None:
        for attr in ("model", "tokenizer", "romanizer"):
            self.__dict__.pop(attr, None)
        super().unload()

    def _speak(self, sentences: list[str], item: GenerationItem, duration: float,
               options: Mapping[str, Any]) -> tuple[list[np.ndarray], dict[str, Any]]:
        import torch

        extra: dict[str, Any] = {"voice": "default", "language": self.language}
        if self.romanizer is not None:
            sentences = [self.romanizer.romanize_string(s, lcode=self.language) for s in sentences]
            extra["romanized"] = True
        inputs = self.tokenizer(sentences, return_tensors="pt", padding=True)
        for sentence, ids in zip(sentences, inputs["input_ids"].tolist()):
            if not any(token.isalnum() for token in self.tokenizer.convert_ids_to_tokens(ids)):
                raise InvalidRequest(f"the {self.language} MMS voice cannot read {sentence!r}: none of its letters "
                                     "are in the model's alphabet (is the text in the worker's language?)")
        self.model.speaking_rate = float(options["speaking_rate"])
        with torch.inference_mode():
            out = self.model(**{k: v.to(self.device) for k, v in inputs.items()})
        waves = out.waveform.float().cpu().numpy()
        return [waves[i, :int(n)] for i, n in enumerate(out.sequence_lengths.tolist())], extra

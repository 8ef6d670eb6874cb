"""SpeechT5 text-to-speech (microsoft/speecht5_tts + HiFi-GAN vocoder) with voice cloning from a sample."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tagcore import Capabilities, GenerationItem, Option
from tagcore.backend import WeightsStatus
from tagcore.errors import ConfigError
from tagcore.options import device_option, dtype_option, weights_option

from .base import PAUSE_OPTION, SpeechBackend, frames_cap
from .voice import (DEFAULT_SPEAKER_ENCODER, DEFAULT_VOICE_FILE, MAX_PROMPT_SECONDS, SPEAKER_ENCODER_FILES,
                    SpeakerEncoder, load_voice_file)
from tagcore.weights import WeightsSource

from . import weights
from .weights import MODEL_WEIGHTS

DEFAULT_MODEL = "microsoft/speecht5_tts"
DEFAULT_VOCODER = "microsoft/speecht5_hifigan"
MODEL_FILES = ("config.json", MODEL_WEIGHTS, "spm_char.model")
VOCODER_FILES = ("config.json", MODEL_WEIGHTS)
MAX_LEN_RATIO = 20.0
"""transformers' default cap on decoder steps per encoder step; a stop token normally ends decoding earlier."""


class SpeechT5Backend(SpeechBackend):
    name = "speecht5"
    aliases = ("tts",)
    description = "English speech from text (SpeechT5); clones a voice from an audio prompt"
    sample_rate = 16000
    capabilities = Capabilities(seed=True, batch=False, audio_prompt=True, audio_prompt_role="voice",
                                max_audio_prompt=MAX_PROMPT_SECONDS)
    options = (
        PAUSE_OPTION,
        weights_option(f"SpeechT5 TTS model: a save_pretrained folder or a hub id (default {DEFAULT_MODEL})"),
        Option("vocoder", "path", "", f"HiFi-GAN vocoder: folder or hub id (default {DEFAULT_VOCODER})",
               scope="worker"),
        Option("speaker_encoder", "path", "",
               f"x-vector model that turns a voice sample into a speaker embedding: folder or hub id "
               f"(default {DEFAULT_SPEAKER_ENCODER}); loaded on the first sample", scope="worker"),
        Option("voice", "path", "", "a .npy x-vector (512 values) to use instead of the shipped default voice",
               scope="worker"),
        device_option(),
        dtype_option(),
    )

    @classmethod
    def _sources(cls, settings: Mapping[str, Any]) -> tuple[WeightsSource, WeightsSource, WeightsSource]:
        return (
            weights.locate("SpeechT5 model", settings.get("weights", ""), DEFAULT_MODEL, MODEL_FILES),
            weights.locate("SpeechT5 vocoder", settings.get("vocoder", ""), DEFAULT_VOCODER, VOCODER_FILES),
            weights.locate("speaker encoder", settings.get("speaker_encoder", ""), DEFAULT_SPEAKER_ENCODER,
                                 SPEAKER_ENCODER_FILES),
        )

    @classmethod
    def weights_status(cls, settings: Mapping[str, Any]) -> WeightsStatus:
        model, vocoder, encoder = cls._sources(settings)
        (model_ok, model_text), (voc_ok, voc_text) = model.status(), vocoder.status()
        enc_ok, enc_text = encoder.status()
        detail = "; ".join([model_text, voc_text, enc_text + ("" if enc_ok else " (only needed to clone voices)")])
        return WeightsStatus(model_ok and voc_ok, f"{model.where} + {vocoder.where}", detail)

    @property
    def model_id(self) -> str:
        model, vocoder, _ = self._sources(self.settings)
        return f"speecht5:{model.where}+{vocoder.where}"

    def load(self) -> None:
        from transformers import SpeechT5ForTextToSpeech, SpeechT5HifiGan, SpeechT5Processor

        self._setup_device()
        model_src, vocoder_src, self.encoder_source = self._sources(self.settings)
        self.processor = weights.load(model_src, SpeechT5Processor.from_pretrained, DEFAULT_MODEL)
        model = weights.load(model_src, lambda p: SpeechT5ForTextToSpeech.from_pretrained(p, dtype=self.dtype),
                             DEFAULT_MODEL)
        vocoder = weights.load(vocoder_src, lambda p: SpeechT5HifiGan.from_pretrained(p, dtype=self.dtype),
                               DEFAULT_VOCODER)
        self.model, self.vocoder = model.to(self.device).eval(), vocoder.to(self.device).eval()
        self.embedding_dim = int(self.model.config.speaker_embedding_dim)
        voice_file = self.settings["voice"] or DEFAULT_VOICE_FILE
        self.default_voice = load_voice_file(voice_file, self.embedding_dim)
        self.voice_name = "default" if not self.settings["voice"] else f"file {self.settings['voice']}"
        self.hop = int(np.prod(self.vocoder.config.upsample_rates))
        self.speaker_encoder: SpeakerEncoder | None = None

    def unload(self) -> None:
        for attr in ("model", "vocoder", "processor", "speaker_encoder"):
            self.__dict__.pop(attr, None)
        super().unload()

    def _voice_for(self, item: GenerationItem) -> tuple[np.ndarray, str]:
        if item.audio_prompt is None:
            return self.default_voice, self.voice_name
        if self.speaker_encoder is None:
            self.speaker_encoder = SpeakerEncoder(self.encoder_source, self.device)
        if self.speaker_encoder.dim != self.embedding_dim:
            raise ConfigError(f"the speaker encoder {self.encoder_source.where} makes {self.speaker_encoder.dim}-d "
                              f"embeddings; the SpeechT5 model needs {self.embedding_dim}")
        embedding, seconds = self.speaker_encoder.embed(item.audio_prompt)
        return embedding, f"cloned from sample ({seconds:.1f} s)"

    def _speak(self, sentences: list[str], item: GenerationItem, duration: float,
               options: Mapping[str, Any]) -> tuple[list[np.ndarray], dict[str, Any]]:
        import torch

        embedding, voice = self._voice_for(item)
        inputs = self.processor(text=sentences, return_tensors="pt", padding=True)
        input_ids = inputs["input_ids"].to(self.device)
        speakers = torch.from_numpy(embedding).to(self.device, self.dtype).expand(len(sentences), -1)
        # Bound decoding by the requested duration: a sentence longer than the whole clip is cut anyway.
        ratio = min(MAX_LEN_RATIO, frames_cap(duration, self.sample_rate, self.hop) / input_ids.shape[1])
        with torch.inference_mode():
            waves, lengths = self.model.generate_speech(
                input_ids, speakers, attention_mask=inputs["attention_mask"].to(self.device),
                vocoder=self.vocoder, maxlenratio=ratio, return_output_lengths=True)
        waves = waves.float().cpu().numpy().reshape(len(sentences), -1)
        return [waves[i, :int(n)] for i, n in enumerate(lengths)], {"voice": voice}

"""CLAP score and FAD for benchmark cells, only when the user gave a CLAP checkpoint (never invented)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tagcore.audio_types import Audio
from tagcore.config import Config
from tagcore.errors import ConfigError, InvalidRequest

from .runner import Quality


class ClapQuality(Quality):
    """Mean CLAP cosine of a cell's clips, and FAD over CLAP embeddings against a reference folder."""

    def __init__(self, config: Config, checkpoint: str | None, fad_reference: Path | None) -> None:
        try:
            from tag_clap.fad import frechet_distance, reference_clips
            from tag_clap.scorer import ClapScorer
            from tag_clap.settings import ClapSettings
        except ImportError:
            raise ConfigError("CLAP scores need the tag-clap plugin: pip install tag-clap") from None
        self.scorer = ClapScorer(config, ClapSettings.from_config(config, checkpoint=checkpoint))
        self.scorer.load()
        self._frechet = frechet_distance
        self.reference: np.ndarray | None = None
        if fad_reference is not None:
            self.reference = self.scorer.model.embed_audio(reference_clips(fad_reference))

    @property
    def model_id(self) -> str:
        return self.scorer.model_id

    def measure(self, prompts: Sequence[str], clips: Sequence[Audio]) -> tuple[float | None, float | None]:
        audio = self.scorer.model.embed_audio(clips)
        text = self.scorer.model.embed_text(prompts)
        clap = float(np.mean(np.sum(text * audio, axis=1)))
        if self.reference is None:
            return clap, None
        if len(clips) < 2:
            raise InvalidRequest("FAD needs at least 2 generated clips per run: use --limit 2 or more")
        return clap, self._frechet(audio, self.reference)


def build_quality(config: Config, checkpoint: str | None, fad_reference: Path | None) -> Quality:
    """ClapQuality when a checkpoint is given (option or [clap] config), else a Quality that measures nothing."""
    configured = checkpoint or config.section("clap").get("checkpoint")
    if not configured:
        if fad_reference is not None:
            raise InvalidRequest("--fad-reference needs a CLAP checkpoint (--clap-checkpoint or [clap] checkpoint)")
        return Quality()
    return ClapQuality(config, checkpoint, fad_reference)

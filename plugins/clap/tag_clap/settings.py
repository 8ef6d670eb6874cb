"""The `[clap]` configuration section (TOML table or TAG_CLAP_* variables), parsed once and validated."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tagcore.config import Config, settings_from_table
from tagcore.errors import ConfigError

AUDIO_MODELS = ("HTSAT-tiny", "HTSAT-base", "HTSAT-large")
"""laion_clap audio encoders whose public checkpoints work through get_audio_embedding (PANN ones crash there)."""


@dataclass(frozen=True)
class ClapSettings:
    """Which CLAP to load and how: the checkpoint decides the score scale, so it is reported with every score."""

    checkpoint: str = ""
    """Local .pt file (e.g. 630k-audioset-best.pt); empty means none configured."""
    amodel: str = "HTSAT-tiny"
    enable_fusion: bool = False
    device: str = "auto"
    batch_size: int = 8
    download: bool = False
    """Allow laion_clap to fetch its default checkpoint and roberta-base from the network when none is given."""

    @classmethod
    def from_config(cls, config: Config, **overrides: Any) -> "ClapSettings":
        raw = {**config.section("clap"), **{k: v for k, v in overrides.items() if v is not None}}
        parsed = settings_from_table(cls, raw, "[clap]")
        if parsed.amodel not in AUDIO_MODELS:
            raise ConfigError(f"clap amodel {parsed.amodel!r} is not one of {', '.join(AUDIO_MODELS)}")
        if parsed.batch_size < 1:
            raise ConfigError("clap batch_size must be at least 1")
        checkpoint = str(Path(parsed.checkpoint).expanduser()) if parsed.checkpoint else ""
        return dataclasses.replace(parsed, checkpoint=checkpoint, device=parsed.device or "auto")

    @property
    def configured(self) -> bool:
        """True when a score can be computed: a checkpoint is given or downloading was allowed."""
        return bool(self.checkpoint) or self.download

"""The `[clap]` configuration section (TOML table or TAG_CLAP_* variables), parsed once and validated."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tagcore.config import Config
from tagcore.errors import ConfigError

AUDIO_MODELS = ("HTSAT-tiny", "HTSAT-base", "HTSAT-large")
"""laion_clap audio encoders whose public checkpoints work through get_audio_embedding (PANN ones crash there)."""


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"clap: {value!r} is not a yes/no value")


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
        known = {"checkpoint", "amodel", "enable_fusion", "device", "batch_size", "download"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"[clap] has no setting {', '.join(unknown)} (settings: {', '.join(sorted(known))})")
        amodel = str(raw.get("amodel", cls.amodel))
        if amodel not in AUDIO_MODELS:
            raise ConfigError(f"clap amodel {amodel!r} is not one of {', '.join(AUDIO_MODELS)}")
        device = str(raw.get("device", cls.device)) or "auto"
        try:
            batch_size = int(raw.get("batch_size", cls.batch_size))
        except (TypeError, ValueError):
            raise ConfigError(f"clap batch_size {raw.get('batch_size')!r} is not an integer") from None
        if batch_size < 1:
            raise ConfigError("clap batch_size must be at least 1")
        checkpoint = str(raw.get("checkpoint", "") or "")
        return cls(
            checkpoint=str(Path(checkpoint).expanduser()) if checkpoint else "",
            amodel=amodel,
            enable_fusion=_flag(raw.get("enable_fusion", False)),
            device=device,
            batch_size=batch_size,
            download=_flag(raw.get("download", False)),
        )

    @property
    def configured(self) -> bool:
        """True when a score can be computed: a checkpoint is given or downloading was allowed."""
        return bool(self.checkpoint) or self.download

"""The `clap` scorer: raw cosine between a prompt's CLAP text embedding and a clip's CLAP audio embedding."""
from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from tagcore.audio_types import Audio
from tagcore.config import Config
from tagcore.errors import InvalidRequest
from tagcore.scoring import Scorer

from .model import ClapModel
from .settings import ClapSettings

_models: dict[ClapSettings, ClapModel] = {}
_models_lock = threading.Lock()


def shared_model(settings: ClapSettings) -> ClapModel:
    """One loaded CLAP per distinct settings in a process (a worker and a benchmark reuse it)."""
    with _models_lock:
        if settings not in _models:
            _models[settings] = ClapModel(settings)
        return _models[settings]


class ClapScorer(Scorer):
    """CLAP score as in the literature: the mean of these cosines over a prompt set is "the CLAP score".

    Scores are only comparable under the same checkpoint and preprocessing (see `model_id`).
    """

    name = "clap"
    description = "LAION CLAP text-audio cosine (laion_clap; [clap] checkpoint = local .pt file)"

    def __init__(self, config: Config, settings: ClapSettings | None = None) -> None:
        super().__init__(config)
        self.settings = settings or ClapSettings.from_config(config)
        self.model = shared_model(self.settings)

    @property
    def model_id(self) -> str:
        return self.model.model_id

    def load(self) -> None:
        """Load now (the first score would otherwise pay for it); raises WeightsMissing with the fix."""
        self.model.load()

    def score(self, prompts: Sequence[str], audios: Sequence[Audio]) -> list[float]:
        if len(prompts) != len(audios):
            raise InvalidRequest(f"{len(prompts)} prompts for {len(audios)} clips: need one prompt per clip")
        if not prompts:
            return []
        unique = sorted(set(prompts))
        text = self.model.embed_text(unique)
        row = {p: i for i, p in enumerate(unique)}
        audio = self.model.embed_audio(audios)
        text_rows = text[[row[p] for p in prompts]]
        return [float(x) for x in np.sum(text_rows * audio, axis=1)]

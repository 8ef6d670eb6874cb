"""Frechet distance between two sets of embeddings (FAD when the embeddings are audio embeddings).

FAD = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)), the Frechet distance between Gaussians fitted to each
set. It is only meaningful with many clips per set (hundreds); with fewer clips than embedding dimensions the
covariances are singular and the value is dominated by estimation noise, so report the clip counts with it.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import linalg

from tagcore.audio import read
from tagcore.audio_types import Audio
from tagcore.errors import InvalidRequest

from .model import ClapModel

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to the rows of `a` and `b` (each at least 2 rows)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise InvalidRequest(f"embedding sets must be (N, D) with the same D, got {a.shape} and {b.shape}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise InvalidRequest("FAD needs at least 2 clips in each set")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():
        # Singular products (few clips): regularise both covariances slightly, as is customary.
        eps = 1e-6 * np.eye(a.shape[1])
        root = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    root = np.real(root)
    diff = mu_a - mu_b
    value = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(root)
    return float(max(value, 0.0))


def reference_clips(folder: Path) -> list[Audio]:
    """Every audio file directly in `folder` (sorted by name), decoded."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidRequest(f"FAD reference folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    if len(files) < 2:
        raise InvalidRequest(f"FAD reference folder {folder} needs at least 2 audio files ({', '.join(AUDIO_SUFFIXES)})")
    return [read(p) for p in files]


def clap_fad(model: ClapModel, generated: Sequence[Audio], reference: np.ndarray) -> float:
    """FAD between CLAP embeddings of `generated` clips and precomputed reference embeddings."""
    return frechet_distance(model.embed_audio(generated), reference)

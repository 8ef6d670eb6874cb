"""Loading a LAION CLAP checkpoint through laion_clap and embedding text and audio deterministically.

laion_clap crops clips longer than its 10 s window at a RANDOM offset (np.random), so the same clip would score
differently on every call. We cut the window ourselves (the centre 10 s) before handing the audio over, after the
preprocessing of the common reference setup (stable-audio-metrics): mono, 48 kHz, peak at -1 dBFS; laion_clap then
does its int16 round trip and repeat-pads shorter clips (deterministic).
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tagcore.audio import normalize, resample
from tagcore.audio_types import Audio
from tagcore.errors import ConfigError, InvalidRequest, WeightsMissing
from tagcore.torch_files import load_torch_file

from .hubfiles import TEXT_REPO, hub_cache_dir, missing_files_message, missing_text_files, tokenizer_is_empty
from .settings import ClapSettings

if TYPE_CHECKING:  # laion_clap imports torch and its training code: only when a model loads
    from laion_clap import CLAP_Module

SAMPLE_RATE = 48000
WINDOW_FRAMES = 480000
"""laion_clap's hard-coded input window: 10 s at 48 kHz."""
POSITION_IDS = "text_branch.embeddings.position_ids"


def center_window(samples: np.ndarray, frames: int = WINDOW_FRAMES) -> np.ndarray:
    """The middle `frames` samples of a 1-D signal (unchanged when it is not longer)."""
    if samples.shape[0] <= frames:
        return samples
    start = (samples.shape[0] - frames) // 2
    return samples[start:start + frames]


def prepare(audio: Audio) -> np.ndarray:
    """Mono 48 kHz float32 cut to the deterministic 10 s window, whose peak is then set to -1 dBFS."""
    if audio.frames == 0:
        raise InvalidRequest("cannot score an empty clip")
    clip = resample(audio.mono(), SAMPLE_RATE)
    window = Audio(center_window(clip.samples[0]), SAMPLE_RATE)
    return np.ascontiguousarray(normalize(window, -1.0).samples[0], dtype=np.float32)


@contextlib.contextmanager
def hub_offline(enabled: bool) -> Iterator[None]:
    """Keep huggingface_hub off the network while laion_clap imports and builds (it hangs in DNS retries).

    huggingface_hub reads HF_HUB_OFFLINE when it is first imported, so the module constant is set too.
    """
    if not enabled:
        yield
        return
    saved_env = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    from huggingface_hub import constants

    saved_constant = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved_constant
        if saved_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved_env


def _read_state_dict(path: Path) -> dict:
    """A LAION checkpoint's weights ({"state_dict": ...} or bare), without DataParallel prefixes.

    laion_clap's own loader deletes `position_ids` unconditionally and fails on checkpoints saved without it;
    this one drops it only when present (recent transformers no longer keep it as a parameter).
    """
    checkpoint = load_torch_file(path, what="CLAP checkpoint", allowed_globals=_checkpoint_globals(),
                                 how_to_get="Download a LAION CLAP checkpoint again from "
                                            "https://huggingface.co/lukewys/laion_clap")
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state:
        raise WeightsMissing(f"CLAP checkpoint {path} holds no state_dict: is it a laion_clap .pt file?")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    state.pop(POSITION_IDS, None)
    return state


def _checkpoint_globals() -> list:
    """What LAION CLAP checkpoints hold besides tensors and plain containers: their training loop stored the
    optimizer's learning rate as a numpy float64 (a numpy scalar and its dtype). Nothing that can run code."""
    import numpy as np

    try:
        # numpy's stubs leave out `scalar`, which both modules define at run time
        from numpy._core.multiarray import scalar  # type: ignore[attr-defined]
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar  # type: ignore[attr-defined]
    return [scalar, np.dtype, *(getattr(np.dtypes, n) for n in ("Float64DType", "Float32DType", "Int64DType")
                                 if hasattr(np, "dtypes") and hasattr(np.dtypes, n))]


class ClapModel:
    """A loaded CLAP: unit-norm text and audio embeddings, computed in fixed-size chunks."""

    def __init__(self, settings: ClapSettings) -> None:
        self.settings = settings
        self.module: CLAP_Module | None = None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        name = Path(self.settings.checkpoint).name if self.settings.checkpoint else "laion_clap default download"
        fusion = "fusion" if self.settings.enable_fusion else "no fusion"
        return f"{name} ({self.settings.amodel}, {fusion})"

    def check_files(self) -> None:
        """Raise WeightsMissing for a missing checkpoint or hub file, before the slow laion_clap import."""
        if self.settings.checkpoint:
            path = Path(self.settings.checkpoint)
            if not path.is_file():
                raise WeightsMissing(
                    f"CLAP checkpoint {path} does not exist. Download a LAION CLAP checkpoint such as "
                    "630k-audioset-best.pt (HTSAT-tiny) or 630k-audioset-fusion-best.pt (enable_fusion = true) "
                    "from https://huggingface.co/lukewys/laion_clap and set [clap] checkpoint (or "
                    "TAG_CLAP_CHECKPOINT) to its path")
        elif not self.settings.download:
            raise WeightsMissing(
                "no CLAP checkpoint configured: set [clap] checkpoint (or TAG_CLAP_CHECKPOINT) to a local "
                "LAION CLAP .pt file, or set [clap] download = true to fetch laion_clap's default one")
        if not self.settings.download:
            missing = missing_text_files()
            if missing:
                raise WeightsMissing(missing_files_message(missing))

    def load(self) -> CLAP_Module:
        """The laion_clap module, loaded once (under a lock: scorers may share a model across threads)."""
        with self._lock:
            if self.module is not None:
                return self.module
            self.check_files()
            from tagcore.devices import resolve_device

            device = resolve_device(self.settings.device)
            with hub_offline(not self.settings.download):
                import laion_clap  # appends its own folder to sys.path (training, evaluate, clap_module)

                module = laion_clap.CLAP_Module(enable_fusion=self.settings.enable_fusion,
                                                amodel=self.settings.amodel, device=str(device))
            if tokenizer_is_empty(module.tokenize):
                raise WeightsMissing(missing_files_message(["vocab.json", "merges.txt"], problem=(
                    f"laion_clap built an EMPTY {TEXT_REPO} tokenizer (its silent offline fallback), so every prompt "
                    f"would embed alike: put {TEXT_REPO}'s vocab.json and merges.txt in its snapshot folder under "
                    f"{hub_cache_dir() / ('models--' + TEXT_REPO)}.")))
            if self.settings.checkpoint:
                state = _read_state_dict(Path(self.settings.checkpoint))
                try:
                    module.model.load_state_dict(state)
                except RuntimeError as exc:
                    raise ConfigError(
                        f"CLAP checkpoint {self.settings.checkpoint} does not fit amodel={self.settings.amodel}, "
                        f"enable_fusion={self.settings.enable_fusion}: fusion checkpoints need enable_fusion = true, "
                        f"music_* ones amodel = HTSAT-base ({str(exc).splitlines()[0]})") from None
            else:
                module.load_ckpt(verbose=False)
            module.eval()
            self.module = module
            return module

    def _chunks(self, n: int) -> Iterator[slice]:
        size = self.settings.batch_size
        for start in range(0, n, size):
            yield slice(start, min(n, start + size))

    def embed_text(self, prompts: Sequence[str]) -> np.ndarray:
        """(N, D) unit-norm text embeddings; every text is padded to 77 tokens, so batching cannot change them."""
        import torch

        module = self.load()
        prompts = list(prompts)
        if not prompts:
            return np.zeros((0, 512), dtype=np.float32)
        with torch.inference_mode():
            parts = [module.get_text_embedding(prompts[s]) for s in self._chunks(len(prompts))]
        return np.concatenate(parts).astype(np.float32)

    def embed_audio(self, audios: Sequence[Audio]) -> np.ndarray:
        """(N, D) unit-norm audio embeddings of the deterministic 10 s window of each clip."""
        import torch

        module = self.load()
        clips = [prepare(a) for a in audios]
        if not clips:
            return np.zeros((0, 512), dtype=np.float32)
        with torch.inference_mode():
            # Every clip is padded or cut to the same 10 s window by laion_clap, so chunks stack.
            parts = [module.get_audio_embedding_from_data(clips[s]) for s in self._chunks(len(clips))]
        return np.concatenate(parts).astype(np.float32)

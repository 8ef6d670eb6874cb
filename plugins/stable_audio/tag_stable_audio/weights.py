"""Where Stable Audio weights are, whether they are complete, and what they can make, without loading a model.

Weights are a diffusers pipeline folder in the hub layout (model_index.json at the root, one folder per
component) or a hub id. A hub id is only ever read from the local Hugging Face cache: nothing is downloaded behind
the user's back; `tag models pull` is the one command that downloads, and it says exactly what a gated repository
needs (the licence accepted on the hub, HF_TOKEN) when the hub refuses. Locating, checking and the messages about
missing files are tagcore's (`tagcore.weights.PublishedCheckpoints`, shared with the ACE-Step plugin); the
variants, the limits read from each checkpoint's configuration and the download are here.
"""
from __future__ import annotations

import math
from pathlib import Path

from tagcore.errors import WeightsMissing
from tagcore.weights import PublishedCheckpoints, read_config

HUB = "https://huggingface.co"
SA3 = PublishedCheckpoints("stable_audio_3", {
    "small-sfx": "stabilityai/stable-audio-3-small-sfx",
    "small-music": "stabilityai/stable-audio-3-small-music",
    "medium": "stabilityai/stable-audio-3-medium",
}, "small-sfx", "Stability AI Community License")
SAO = PublishedCheckpoints("stable_audio_open", {"1.0": "stabilityai/stable-audio-open-1.0"}, "1.0",
                           "Stability AI Community License")


def sa3_max_duration(folder: Path) -> float:
    """Longest clip a Stable Audio 3 checkpoint makes: its duration embedder's upper clamp (`max_val`, seconds)."""
    config = read_config(folder / "duration_embedder" / "config.json")
    return float(config.get("max_val", 384.0))


def sao_max_duration(folder: Path) -> float:
    """Longest clip of a Stable Audio Open checkpoint: the DiT's latent window times the autoencoder's hop."""
    dit = read_config(folder / "transformer" / "config.json")
    vae = read_config(folder / "vae" / "config.json")
    hop = math.prod(vae.get("downsampling_ratios", [2, 4, 4, 8, 8]))
    return int(dit.get("sample_size", 1024)) * hop / int(vae.get("sampling_rate", 44100))


def gated_message(repo_id: str, checkpoints: PublishedCheckpoints) -> str:
    """What to do when the hub refuses a download of a gated repository."""
    return (f"the hub refused {repo_id}: it is gated. Accept the {checkpoints.licence} on {HUB}/{repo_id} while "
            f"logged in, create a read token at {HUB}/settings/tokens, then run again with HF_TOKEN set to it "
            f"(export HF_TOKEN=hf_...). The licence is between you and Stability AI; TAG does not accept it for you.")


def pull(checkpoints: PublishedCheckpoints, variant: str, dest: Path) -> Path:
    """Download `variant` into `dest` (the one place this plugin downloads); gated refusals say what to do."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    repo_id = checkpoints.repo(variant)
    try:
        snapshot_download(repo_id, local_dir=str(dest))
    except (GatedRepoError, RepositoryNotFoundError) as exc:
        raise WeightsMissing(gated_message(repo_id, checkpoints)) from exc
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            raise WeightsMissing(gated_message(repo_id, checkpoints)) from exc
        raise WeightsMissing(f"could not download {repo_id}: {exc}") from exc
    except OSError as exc:  # offline, DNS, proxy: the hub could not be asked at all
        raise WeightsMissing(f"could not reach the Hugging Face hub for {repo_id} ({type(exc).__name__}: {exc}); "
                             f"download it where the hub is reachable and copy the folder here") from exc
    return dest

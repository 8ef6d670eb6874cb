"""Where Stable Audio weights are, whether they are complete, and what they can make, without loading a model.

Weights are a diffusers pipeline folder in the hub layout (model_index.json at the root, one folder per
component) or a hub id. A hub id is only ever read from the local Hugging Face cache: nothing is downloaded behind
the user's back; `tag models pull` is the one command that downloads, and it says exactly what a gated repository
needs (the licence accepted on the hub, HF_TOKEN) when the hub refuses.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from tagcore.errors import InvalidRequest, WeightsMissing
from tagcore.weights import WeightsSource, read_config

HUB = "https://huggingface.co"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model")


@dataclass(frozen=True)
class Family:
    """One backend's published checkpoints: variant name -> hub repository."""

    backend: str
    variants: dict[str, str]
    default: str
    licence: str

    def repo(self, variant: str) -> str:
        if variant not in self.variants:
            raise InvalidRequest(f"{self.backend} has no variant {variant!r} (variants: {', '.join(self.variants)})")
        return self.variants[variant]

    def pull_command(self, variant: str | None = None) -> str:
        variant = variant or self.default
        return f"tag models pull {self.backend} --variant {variant} --dest DIR"


SA3 = Family("stable_audio_3", {
    "small-sfx": "stabilityai/stable-audio-3-small-sfx",
    "small-music": "stabilityai/stable-audio-3-small-music",
    "medium": "stabilityai/stable-audio-3-medium",
}, "small-sfx", "Stability AI Community License")
SAO = Family("stable_audio_open", {"1.0": "stabilityai/stable-audio-open-1.0"}, "1.0",
             "Stability AI Community License")


def resolve(weights: str, family: Family) -> WeightsSource:
    """`weights` (a folder or a hub id; empty: the family's default repository) as a WeightsSource whose messages
    name the `tag models pull` command of the variant it points at."""
    source = WeightsSource.locate(f"{family.backend} weights", weights, family.repo(family.default))
    return dataclasses.replace(source, fetch=family.pull_command(variant_of(source.hub_id, family)))


def missing_files(folder: Path) -> list[str]:
    """Files a pipeline folder lacks, relative to it: model_index.json, then each component's config and weights."""
    index = folder / "model_index.json"
    if not index.is_file():
        return ["model_index.json"]
    missing = []
    for name, spec in read_config(index).items():
        if name.startswith("_") or not isinstance(spec, list) or spec[0] is None:
            continue
        part = folder / name
        required: list[tuple[str, ...]]  # each entry: any one of these names
        if name.startswith("scheduler"):
            required = [("scheduler_config.json",)]
        elif name.startswith("tokenizer"):
            required = [("tokenizer_config.json",), TOKENIZER_FILES]
        else:  # transformers writes model.*, diffusers (and its pipeline modules) diffusion_pytorch_model.*
            stem = "model" if spec[0] == "transformers" else "diffusion_pytorch_model"
            required = [("config.json",), tuple(f"{stem}{s}" for s in WEIGHT_SUFFIXES)]
        for choices in required:
            if not any((part / choice).is_file() for choice in choices):
                missing.append(f"{name}/{choices[0]}" if len(choices) == 1 else f"{name}/{choices[0]} (or "
                               f"{', '.join(choices[1:])})")
    return missing


def missing_message(source: WeightsSource, family: Family, missing: list[str]) -> str:
    """What is missing and the command that gets it."""
    folder = source.folder()
    if folder is None:
        return (f"{source.hub_id} is not in the Hugging Face cache and is never downloaded implicitly; run "
                f"`{family.pull_command(variant_of(source.hub_id, family))}` and use -O weights=DIR")
    return (f"{folder} lacks {', '.join(missing)}; get the weights with `{family.pull_command()}` "
            f"(variants: {', '.join(family.variants)}) and use -O weights=DIR")


def variant_of(repo_id: str | None, family: Family) -> str | None:
    return next((v for v, r in family.variants.items() if r == repo_id), None)


def missing_from(source: WeightsSource) -> tuple[Path | None, list[str]]:
    """The folder to read (None: a hub id not cached) and the files it lacks."""
    folder = source.folder()
    return folder, ["model_index.json"] if folder is None else missing_files(folder)


def check(source: WeightsSource, family: Family) -> Path:
    """The complete folder to load, or WeightsMissing naming the missing file and the command to get it."""
    folder, missing = missing_from(source)
    if folder is None or missing:
        raise WeightsMissing(missing_message(source, family, missing))
    return folder


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


def gated_message(repo_id: str, family: Family) -> str:
    """What to do when the hub refuses a download of a gated repository."""
    return (f"the hub refused {repo_id}: it is gated. Accept the {family.licence} on {HUB}/{repo_id} while "
            f"logged in, create a read token at {HUB}/settings/tokens, then run again with HF_TOKEN set to it "
            f"(export HF_TOKEN=hf_...). The licence is between you and Stability AI; TAG does not accept it for you.")


def pull(family: Family, variant: str, dest: Path) -> Path:
    """Download `variant` into `dest` (the one place this plugin downloads); gated refusals say what to do."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    repo_id = family.repo(variant)
    try:
        snapshot_download(repo_id, local_dir=str(dest))
    except (GatedRepoError, RepositoryNotFoundError) as exc:
        raise WeightsMissing(gated_message(repo_id, family)) from exc
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            raise WeightsMissing(gated_message(repo_id, family)) from exc
        raise WeightsMissing(f"could not download {repo_id}: {exc}") from exc
    except OSError as exc:  # offline, DNS, proxy: the hub could not be asked at all
        raise WeightsMissing(f"could not reach the Hugging Face hub for {repo_id} ({type(exc).__name__}: {exc}); "
                             f"download it where the hub is reachable and copy the folder here") from exc
    return dest

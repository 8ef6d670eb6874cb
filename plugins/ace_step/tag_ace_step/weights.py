"""Where ACE-Step weights are, whether they are complete, and what they can make, without loading a model.

Weights are an AceStepPipeline folder in the hub layout (model_index.json at the root, one folder per component)
or a hub id read from the local Hugging Face cache only: nothing is downloaded behind the user's back, `tag models
pull ace_step` is the one command that downloads. (Shaped like the Stable Audio plugin's weights module, so the
common weights-source type in tagcore can take both over.)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tagcore.errors import InvalidRequest, WeightsMissing
from tagcore.options import weights_location
from tagcore.weights import read_config

HUB = "https://huggingface.co"
VARIANTS = {"xl-turbo": "ACE-Step/acestep-v15-xl-turbo-diffusers"}
"""Published checkpoints in the diffusers layout, by variant name."""
DEFAULT_VARIANT = "xl-turbo"
LICENCE = "MIT"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")
CODEC = ("audio_tokenizer", "audio_token_detokenizer")
"""Optional components: the cover task (TAG's variation role) needs both."""
DOCUMENTED_MAX = 600.0
"""ACE-Step 1.5 makes 10 s to 10 min; used when the checkpoint does not say otherwise."""


def repo(variant: str) -> str:
    if variant not in VARIANTS:
        raise InvalidRequest(f"ace_step has no variant {variant!r} (variants: {', '.join(VARIANTS)})")
    return VARIANTS[variant]


def pull_command(variant: str = DEFAULT_VARIANT) -> str:
    return f"tag models pull ace_step --variant {variant} --dest DIR"


@dataclass(frozen=True)
class Source:
    """Resolved weights: a folder (given, or the hub cache's snapshot of a hub id) or a hub id not cached yet."""

    given: str
    folder: Path | None
    hub_id: str | None

    @property
    def model_id(self) -> str:
        return self.hub_id or (self.folder.name if self.folder else self.given)


def resolve(weights: str) -> Source:
    """`weights` (a folder or a hub id; empty: the default variant's repository) as a Source."""
    where, local = weights_location(weights, repo(DEFAULT_VARIANT))
    if local:
        return Source(where, Path(where), None)
    return Source(where, cached_snapshot(where), where)


def cached_snapshot(repo_id: str) -> Path | None:
    """The hub cache's snapshot folder of `repo_id`, or None; never touches the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None


def components(folder: Path) -> dict[str, str]:
    """Component name -> library ("transformers", "diffusers", "ace_step"...) of each present component."""
    return {name: spec[0] for name, spec in read_config(folder / "model_index.json").items()
            if not name.startswith("_") and isinstance(spec, list) and spec and spec[0] is not None}


def _required(name: str, library: str) -> list[tuple[str, ...]]:
    if name == "scheduler":
        return [("scheduler_config.json",)]
    if name == "tokenizer":
        return [("tokenizer_config.json",), TOKENIZER_FILES]
    stem = "model" if library == "transformers" else "diffusion_pytorch_model"
    return [("config.json",), tuple(f"{stem}{s}" for s in WEIGHT_SUFFIXES)]


def missing_files(folder: Path) -> list[str]:
    """Files a pipeline folder lacks, relative to it: model_index.json, then each component's config and weights."""
    if not (folder / "model_index.json").is_file():
        return ["model_index.json"]
    missing = []
    for name, library in components(folder).items():
        for choices in _required(name, library):
            if not any((folder / name / choice).is_file() for choice in choices):
                alternatives = f" (or {', '.join(choices[1:])})" if len(choices) > 1 else ""
                missing.append(f"{name}/{choices[0]}{alternatives}")
    return missing


def missing_message(source: Source, missing: list[str]) -> str:
    """What is missing and the command that gets it."""
    if source.folder is None:
        return (f"{source.hub_id} is not in the Hugging Face cache and is never downloaded implicitly; run "
                f"`{pull_command()}` and use -O weights=DIR")
    return (f"{source.folder} lacks {', '.join(missing)}; get the weights with `{pull_command()}` "
            f"(variants: {', '.join(VARIANTS)}) and use -O weights=DIR")


def check(source: Source) -> Path:
    """The complete folder to load, or WeightsMissing naming the missing file and the command to get it."""
    missing = ["model_index.json"] if source.folder is None else missing_files(source.folder)
    if missing or source.folder is None:
        raise WeightsMissing(missing_message(source, missing))
    return source.folder


def has_codec(folder: Path) -> bool:
    """Whether the checkpoint ships the audio tokenizer and detokenizer the variation (cover) task needs."""
    present = components(folder)
    return all(name in present for name in CODEC)


def max_duration(folder: Path) -> float:
    """Longest song the checkpoint makes: its condition encoder's stored silence latent (the conditioning a song
    is built on; 15000 frames in the released model) at the VAE's latent rate (sampling_rate / hop, 25 Hz), i.e.
    600 s, the documented 10 minutes. Read from the config and the safetensors header, no tensor is loaded."""
    import math

    vae = read_config(folder / "vae" / "config.json")
    rate = int(vae.get("sampling_rate", 48000)) / math.prod(vae.get("downsampling_ratios", [2, 4, 4, 6, 10]))
    frames = _silence_frames(folder / "condition_encoder")
    return round(frames / rate, 3) if frames else DOCUMENTED_MAX


def _silence_frames(part: Path) -> int | None:
    from safetensors import SafetensorError, safe_open

    single = part / "diffusion_pytorch_model.safetensors"
    index = part / "diffusion_pytorch_model.safetensors.index.json"
    if index.is_file():
        single = part / str(read_config(index).get("weight_map", {}).get("silence_latent", ""))
    if not single.is_file():
        return None
    try:
        with safe_open(str(single), "pt") as tensors:
            if "silence_latent" not in tensors.keys():
                return None
            return int(tensors.get_slice("silence_latent").get_shape()[1])
    except (SafetensorError, OSError) as exc:
        raise WeightsMissing(f"{single} is not a readable safetensors file ({exc})") from None


def pull(variant: str, dest: Path) -> Path:
    """Download `variant` into `dest`: the one place this plugin downloads."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    repo_id = repo(variant)
    try:
        snapshot_download(repo_id, local_dir=str(dest))
    except HfHubHTTPError as exc:
        raise WeightsMissing(f"could not download {repo_id}: {exc}") from exc
    except OSError as exc:  # offline, DNS, proxy: the hub could not be asked at all
        raise WeightsMissing(f"could not reach the Hugging Face hub for {repo_id} ({type(exc).__name__}: {exc}); "
                             f"download it where {HUB} is reachable and copy the folder here") from exc
    return dest

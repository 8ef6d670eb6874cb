"""Where ACE-Step weights are, whether they are complete, and what they can make, without loading a model.

Weights are an AceStepPipeline folder in the hub layout (model_index.json at the root, one folder per component)
or a hub id read from the local Hugging Face cache only: nothing is downloaded behind the user's back, `tag models
pull ace_step` is the one command that downloads. Locating, checking and the messages about missing files are
tagcore's (`tagcore.weights.PublishedCheckpoints`, shared with the Stable Audio plugin); what is ACE-Step's own is
here: its codec components, the longest song its checkpoint makes, and the download.
"""
from __future__ import annotations

from pathlib import Path

from tagcore.errors import WeightsMissing
from tagcore.weights import PublishedCheckpoints, pipeline_components, read_config

HUB = "https://huggingface.co"
CHECKPOINTS = PublishedCheckpoints("ace_step", {"xl-turbo": "ACE-Step/acestep-v15-xl-turbo-diffusers"}, "xl-turbo",
                                   "MIT")
"""Published checkpoints in the diffusers layout, by variant name."""
CODEC = ("audio_tokenizer", "audio_token_detokenizer")
"""Optional components: the cover task (TAG's variation role) needs both."""
DOCUMENTED_MAX = 600.0
"""ACE-Step 1.5 makes 10 s to 10 min; used when the checkpoint does not say otherwise."""


def has_codec(folder: Path) -> bool:
    """Whether the checkpoint ships the audio tokenizer and detokenizer the variation (cover) task needs."""
    present = pipeline_components(folder)
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

    repo_id = CHECKPOINTS.repo(variant)
    try:
        snapshot_download(repo_id, local_dir=str(dest))
    except HfHubHTTPError as exc:
        raise WeightsMissing(f"could not download {repo_id}: {exc}") from exc
    except OSError as exc:  # offline, DNS, proxy: the hub could not be asked at all
        raise WeightsMissing(f"could not reach the Hugging Face hub for {repo_id} ({type(exc).__name__}: {exc}); "
                             f"download it where {HUB} is reachable and copy the folder here") from exc
    return dest

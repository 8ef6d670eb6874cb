"""The Hugging Face hub files laion_clap needs besides the checkpoint, checked before it is imported.

laion_clap builds its text encoder with `RobertaModel.from_pretrained('roberta-base')` and its tokenizer with
`RobertaTokenizer.from_pretrained('roberta-base')`. Offline, a missing tokenizer does not fail: it silently comes
back EMPTY and every prompt embeds the same. So we look for the files ourselves and name the missing ones.
"""
from __future__ import annotations

from pathlib import Path

TEXT_REPO = "roberta-base"
REQUIRED = ("config.json", "vocab.json", "merges.txt")
WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def hub_cache_dir() -> Path:
    """The hub cache huggingface_hub itself uses (HF_HUB_CACHE, else HF_HOME/hub, as read at its import)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _cached(filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(TEXT_REPO, filename), str)


def missing_text_files() -> list[str]:
    """Files of roberta-base absent from the local hub cache (empty when the text side can load offline)."""
    missing = [name for name in REQUIRED if not _cached(name)]
    if not any(_cached(name) for name in WEIGHTS):
        missing.append(" or ".join(WEIGHTS))
    return missing


def missing_files_message(missing: list[str], problem: str = "") -> str:
    """What is missing, where it belongs and how to get it; `problem` replaces the default first sentence."""
    folder = hub_cache_dir() / f"models--{TEXT_REPO}"
    problem = problem or (
        f"CLAP needs the {TEXT_REPO} tokenizer and text model in the Hugging Face hub cache, but "
        f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing from {folder}.")
    return (
        f"{problem} "
        f"On a machine with internet run `huggingface-cli download {TEXT_REPO} config.json vocab.json merges.txt "
        f"model.safetensors` (copy {hub_cache_dir()} to offline machines, or point HF_HOME at a copy), "
        "or set [clap] download = true to let laion_clap fetch them."
    )


def tokenizer_is_empty(tokenizer) -> bool:
    """laion_clap's offline fallback tokenizer knows only its special tokens."""
    return len(tokenizer) <= len(set(tokenizer.all_special_tokens))

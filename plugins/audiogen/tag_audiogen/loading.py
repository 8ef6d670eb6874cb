"""Finding and loading audiocraft checkpoints (a local exported folder or a Hugging Face hub id).

Why a module of its own: torch >= 2.6 unpickles with `weights_only=True`, and the released checkpoints store their
training config either as a YAML string (loads fine) or as a pickled omegaconf `DictConfig` (refused; audiocraft
PR #534). Unpickling arbitrary classes can run code, so the omegaconf classes are allowed only when the person
running the worker said they trust the checkpoint (`trust_checkpoint=true`), and then only those classes.
"""
from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tagcore.errors import WeightsMissing
from tagcore.torch_files import UnsafeCheckpoint, load_torch_file, unpickling_cause
from tagcore.weights import WeightsSource

CHECKPOINT_FILES = ("state_dict.bin", "compression_state_dict.bin")
T5_FILES = ("config.json", "model.safetensors", "spiece.model", "tokenizer.json", "tokenizer_config.json")
"""What transformers reads to load a T5 encoder and its tokenizer (all present in the t5-* hub repositories)."""


def resolve_source(weights: str, default_hub_id: str) -> WeightsSource:
    """A local folder or a hub repository (empty: the default hub id), by tagcore's rule for `weights` values:
    something that looks like a path but does not exist is a missing folder, never a 6 GB download."""
    fetch = f"hf download {default_hub_id} {' '.join(CHECKPOINT_FILES)} --local-dir DIR"
    return WeightsSource.locate("audiocraft checkpoint", weights, default_hub_id, CHECKPOINT_FILES, fetch)


def missing_message(source: WeightsSource, missing: list[str], default_hub_id: str) -> str:
    """A sentence telling the user exactly what to download and where to put it."""
    folder = Path(source.where)
    where = f"the folder {folder} does not exist" if not folder.is_dir() else \
        f"{', '.join(str(folder / m) for m in missing)} {'is' if len(missing) == 1 else 'are'} missing"
    return (f"{where}. Download {' and '.join(CHECKPOINT_FILES)} from https://huggingface.co/{default_hub_id} "
            f"(e.g. `hf download {default_hub_id} {' '.join(CHECKPOINT_FILES)} --local-dir {folder}`) "
            f"and put them in {folder}, or set weights to the hub id {default_hub_id} on a machine with internet "
            f"access. The text encoder (T5) is fetched by transformers into the Hugging Face cache on first use.")


def cached_hub_files(repo_id: str) -> list[str]:
    """Checkpoint files of `repo_id` already in the local hub cache (cheap: no network)."""
    from huggingface_hub import try_to_load_from_cache

    cache_dir = os.environ.get("AUDIOCRAFT_CACHE_DIR") or None
    found = []
    for name in CHECKPOINT_FILES:
        hit = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
        if isinstance(hit, str):
            found.append(name)
    return found


def _omegaconf_globals() -> list[Any]:
    """The classes a pickled omegaconf config needs, and nothing else."""
    import collections
    import typing

    from omegaconf import DictConfig, ListConfig, nodes
    from omegaconf.base import ContainerMetadata, Metadata

    node_classes = [getattr(nodes, n) for n in dir(nodes) if n.endswith("Node") and isinstance(getattr(nodes, n), type)]
    return [DictConfig, ListConfig, ContainerMetadata, Metadata, *node_classes, typing.Any, dict, list, int,
            collections.defaultdict]


@contextlib.contextmanager
def checkpoint_loading(trust: bool) -> Iterator[None]:
    """Load checkpoints inside this context: with `trust`, pickled omegaconf configs are accepted."""
    import torch

    if not trust:
        yield
        return
    with torch.serialization.safe_globals(_omegaconf_globals()):
        yield


def check_checkpoint_files(source: WeightsSource, trust: bool, default_hub_id: str) -> None:
    """Read a folder's checkpoint files as audiocraft will, first, so that a damaged or hostile file is refused
    by name ("unsafe or corrupt") and only a pickled omegaconf config gets the advice to trust it."""
    folder = Path(source.where)
    how = (f"Download it again from https://huggingface.co/{default_hub_id} "
           f"(`hf download {default_hub_id} {' '.join(CHECKPOINT_FILES)} --local-dir {folder}`).")
    for name in CHECKPOINT_FILES:
        try:
            load_torch_file(folder / name, what="audiocraft checkpoint", how_to_get=how,
                            allowed_globals=_omegaconf_globals() if trust else ())
        except UnsafeCheckpoint as error:
            if not trust and "omegaconf" in error.cause:
                raise WeightsMissing(_trust_advice(source, default_hub_id, error.cause)) from None
            raise


def _trust_advice(source: WeightsSource, default_hub_id: str, cause: str) -> str:
    return (f"the checkpoint in {source.where} stores its config as a pickled object, which torch refuses to "
            f"load safely (weights_only). If you trust these files (e.g. the official {default_hub_id} download), "
            f"allow it with the worker option trust_checkpoint=true (CLI: -O trust_checkpoint=true, config: "
            f"[backends.<name>] trust_checkpoint = true). Detail: {cause}")


def _text_encoder_being_loaded(exc: BaseException) -> str | None:
    """The T5 name audiocraft's T5 conditioner was loading when `exc` was raised, if it was.

    transformers' offline error names neither the model nor the file, and a checkpoint names its T5 only inside
    its pickled config, so the one reliable witness is the conditioner itself, found in the traceback.
    """
    from audiocraft.modules.conditioners import T5Conditioner

    tb = exc.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if isinstance(owner, T5Conditioner) and getattr(owner, "name", None):
            return str(owner.name)
        tb = tb.tb_next
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else repr(exc)


def _how_to_get_text_encoder(name: str) -> str:
    from huggingface_hub import constants

    return (f"On a machine with internet access run `hf download {name} {' '.join(T5_FILES)}` (it fills that "
            f"machine's hub cache, ~/.cache/huggingface/hub), then copy its models--{name.replace('/', '--')} folder "
            f"into {constants.HF_HUB_CACHE} here, or point HF_HUB_CACHE (or HF_HOME) at a cache that holds it.")


def _text_encoder_message(name: str, exc: BaseException) -> str:
    from huggingface_hub import constants

    offline = " (HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE else ""
    return (f"the checkpoint's text encoder {name} is not in the Hugging Face cache {constants.HF_HUB_CACHE} and "
            f"could not be downloaded{offline}. {_how_to_get_text_encoder(name)} "
            f"Detail: {exc.__class__.__name__}: {_first_line(exc)}")


def text_encoder_names(folder: Path) -> list[str]:
    """The T5 models that a folder checkpoint's conditioners load by name from the Hugging Face cache.

    Empty when the checkpoint uses none, or when its config cannot be read safely here (a pickled config, a damaged
    file): loading then reports the real problem. The file is memory-mapped, so only the config is read.
    """
    import torch
    from omegaconf import DictConfig, OmegaConf

    try:
        package = torch.load(folder / CHECKPOINT_FILES[0], map_location="cpu", mmap=True, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError):
        return []
    cfg = package.get("xp.cfg") if isinstance(package, dict) else None
    if not isinstance(cfg, str):
        return []
    config = OmegaConf.create(cfg)
    conditioners = (config.get("conditioners") if isinstance(config, DictConfig) else None) or {}
    return [str(c.t5.name) for c in conditioners.values() if c.get("model") == "t5" and c.get("t5")]


def uncached_text_encoders_message(folder: Path) -> str:
    """Empty when every T5 the checkpoint in `folder` loads by name is in the local hub cache (cheap: no network);
    otherwise which are not, and how to get them."""
    from huggingface_hub import constants, try_to_load_from_cache

    return " ".join(
        f"its text encoder {name} is not in the Hugging Face cache {constants.HF_HUB_CACHE}; transformers downloads "
        f"it on first load when online. {_how_to_get_text_encoder(name)}"
        for name in text_encoder_names(folder) if not isinstance(try_to_load_from_cache(name, T5_FILES[0]), str))


def check_text_encoders(model: Any) -> None:
    """Refuse a T5 conditioner whose tokenizer transformers made up because the tokenizer files were not found.

    Why: given a cached T5 model without its tokenizer files, transformers 5 does not fail; it builds a tokenizer of
    special tokens only, every word becomes <unk>, and the model silently ignores the text. A T5 embedding table
    is the tokenizer's vocabulary padded to a multiple of 128, so a tokenizer larger than the table, or smaller by
    128 or more, is not the model's own.
    """
    from audiocraft.modules.conditioners import T5Conditioner

    for conditioner in model.lm.condition_provider.conditioners.values():
        if not isinstance(conditioner, T5Conditioner):
            continue
        words, table = conditioner.t5_tokenizer.vocab_size, conditioner.t5.config.vocab_size
        if words > table or table - words >= 128:
            raise WeightsMissing(
                f"the tokenizer files of the text encoder {conditioner.name} are missing from the Hugging Face "
                f"cache: transformers substituted a {words}-token vocabulary (the model's has {table}) that would "
                f"turn every word into <unk>. {_how_to_get_text_encoder(conditioner.name)}")


def explain_load_error(exc: BaseException, source: WeightsSource, default_hub_id: str,
                       trust: bool = False) -> WeightsMissing | None:
    """Turn the failures a user can fix (untrusted pickled config, unsafe or corrupt file, missing hub file
    offline, text encoder not cached) into WeightsMissing."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" in text:
        cause = unpickling_cause(exc)
        if not trust and "omegaconf" in cause:
            return WeightsMissing(_trust_advice(source, default_hub_id, cause))
        return WeightsMissing(f"a checkpoint file in {source.where} is unsafe or corrupt ({cause}), so it is "
                              f"not loaded. Download it again from https://huggingface.co/{default_hub_id}.")
    from huggingface_hub.errors import LocalEntryNotFoundError

    if isinstance(exc, OSError):
        text_encoder = _text_encoder_being_loaded(exc)
        if text_encoder is not None:
            return WeightsMissing(_text_encoder_message(text_encoder, exc))
    if isinstance(exc, (LocalEntryNotFoundError, OSError)) and not source.local:
        return WeightsMissing(
            f"could not get {source.where} from the Hugging Face hub ({exc.__class__.__name__}: "
            f"{_first_line(exc)}). Without internet access, download {' and '.join(CHECKPOINT_FILES)} "
            f"from https://huggingface.co/{source.where} on another machine, copy them into a folder and set "
            f"weights to that folder.")
    return None

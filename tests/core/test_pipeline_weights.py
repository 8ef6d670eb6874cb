"""tagcore's check of a diffusers pipeline folder and its published-checkpoint messages, without diffusers or torch:
the plugins' fixtures each cover one pipeline, these cover the layouts either of them may meet."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tagcore.errors import InvalidRequest, WeightsMissing
from tagcore.weights import PublishedCheckpoints, missing_pipeline_files

CHECKPOINTS = PublishedCheckpoints("demo", {"small": "owner/demo-small", "large": "owner/demo-large"}, "small",
                                   "MIT")


def write_pipeline(folder: Path) -> Path:
    """A complete pipeline folder: two tokenizers (SentencePiece, BPE), a sharded transformers encoder, a diffusers
    model, a second scheduler, and a component absent by design."""
    index = {"_class_name": "DemoPipeline", "tokenizer": ["transformers", "T5Tokenizer"],
             "tokenizer_2": ["transformers", "GPT2Tokenizer"], "text_encoder": ["transformers", "T5EncoderModel"],
             "transformer": ["diffusers", "DemoTransformer"], "scheduler": ["diffusers", "DemoScheduler"],
             "scheduler_2": ["diffusers", "DemoScheduler"], "audio_tokenizer": [None, None]}
    files = ["tokenizer/tokenizer_config.json", "tokenizer/spiece.model", "tokenizer_2/tokenizer_config.json",
             "tokenizer_2/vocab.json", "text_encoder/config.json", "text_encoder/model.safetensors.index.json",
             "transformer/config.json", "transformer/diffusion_pytorch_model.safetensors",
             "scheduler/scheduler_config.json", "scheduler_2/scheduler_config.json"]
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps(index))
    for name in files:
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text("{}")
    return folder


def test_a_complete_pipeline_lacks_nothing(tmp_path):
    assert missing_pipeline_files(write_pipeline(tmp_path / "demo")) == []


def test_each_missing_file_is_named_with_its_alternatives(tmp_path):
    folder = write_pipeline(tmp_path / "demo")
    for name in ("tokenizer_2/vocab.json", "text_encoder/model.safetensors.index.json",
                 "scheduler_2/scheduler_config.json"):
        (folder / name).unlink()
    assert missing_pipeline_files(folder) == [
        "tokenizer_2/tokenizer.json (or vocab.json, tokenizer.model, spiece.model)",
        "text_encoder/model.safetensors (or model.bin, model.safetensors.index.json, model.bin.index.json)",
        "scheduler_2/scheduler_config.json"]
    assert missing_pipeline_files(tmp_path / "nowhere") == ["model_index.json"]


def test_a_hub_id_names_the_pull_command_of_its_variant(tmp_path):
    assert CHECKPOINTS.source("owner/demo-large").fetch == "tag models pull demo --variant large --dest DIR"
    assert CHECKPOINTS.source("").fetch == "tag models pull demo --variant small --dest DIR"
    assert CHECKPOINTS.source("other/model").fetch == "tag models pull demo --variant small --dest DIR"
    with pytest.raises(InvalidRequest, match="small, large"):
        CHECKPOINTS.repo("medium")


def test_an_incomplete_folder_is_refused_naming_the_file_and_the_command(tmp_path):
    folder = write_pipeline(tmp_path / "demo")
    (folder / "transformer" / "config.json").unlink()
    source = CHECKPOINTS.source(str(folder))
    with pytest.raises(WeightsMissing) as raised:
        CHECKPOINTS.check(source)
    assert raised.value.message == (f"{folder} lacks transformer/config.json; get the weights with `tag models pull "
                                    f"demo --variant small --dest DIR` (variants: small, large) and use -O weights=DIR")
    status = CHECKPOINTS.status(source, lambda _: "unused")
    assert (status.present, status.location, status.detail) == (False, str(folder), raised.value.message)
    assert CHECKPOINTS.complete_folder(source) is None


def test_a_complete_folder_is_described_and_a_command_line_folder_is_never_a_hub_id(tmp_path):
    folder = write_pipeline(tmp_path / "demo")
    status = CHECKPOINTS.status(CHECKPOINTS.source(str(folder)), lambda found: f"read {found.name}")
    assert (status.present, status.detail) == (True, "read demo")
    assert CHECKPOINTS.check(CHECKPOINTS.local(folder)) == folder
    looks_like_a_hub_id = Path("owner/absent")
    with pytest.raises(WeightsMissing, match="owner/absent lacks model_index.json"):
        CHECKPOINTS.check(CHECKPOINTS.local(looks_like_a_hub_id))

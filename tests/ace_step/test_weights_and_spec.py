"""The limit and the roles come from the checkpoint; the lyrics option travels in the spec as a long text."""
from __future__ import annotations

import json
import shutil

import pytest

from tag_ace_step import weights as w
from tag_ace_step.backend import AceStepBackend
from tagcore.spec import BackendSpec
from tagcore.weights import missing_pipeline_files


def test_limit_is_the_silence_latent_at_the_vae_rate(turbo_folder, tmp_path):
    assert w.max_duration(turbo_folder) == 600.0  # 15000 frames at 48000 / 1920 = 25 Hz
    edited = tmp_path / "edited"
    shutil.copytree(turbo_folder, edited)
    config = json.loads((edited / "vae" / "config.json").read_text())
    (edited / "vae" / "config.json").write_text(json.dumps({**config, "downsampling_ratios": [2, 4, 4, 6, 20]}))
    assert w.max_duration(edited) == 1200.0  # 15000 frames at 12.5 Hz: read, not assumed
    spec = AceStepBackend.spec({"weights": str(edited)})
    assert spec.max_duration == spec.native_max_duration == 1200.0


def test_a_checkpoint_without_the_audio_tokenizer_offers_continuation_only(turbo_folder, tmp_path):
    folder = tmp_path / "no-codec"
    shutil.copytree(turbo_folder, folder)
    index = json.loads((folder / "model_index.json").read_text())
    for name in w.CODEC:
        index[name] = [None, None]
        shutil.rmtree(folder / name)
    (folder / "model_index.json").write_text(json.dumps(index))
    assert missing_pipeline_files(folder) == [] and not w.has_codec(folder)
    spec = AceStepBackend.spec({"weights": str(folder)})
    assert spec.audio_prompt_roles == ("continuation",)
    assert "strength" not in {o.name for o in spec.options}
    full = AceStepBackend.spec({"weights": str(turbo_folder)})
    assert full.audio_prompt_roles == ("continuation", "variation")


def test_lyrics_option_survives_the_wire(turbo_folder):
    spec = AceStepBackend.spec({"weights": str(turbo_folder)})
    again = BackendSpec.from_json(spec.to_json())
    lyrics = next(o for o in again.options if o.name == "lyrics")
    assert lyrics.multiline and lyrics.scope == "request" and lyrics.default == ""
    assert not next(o for o in again.options if o.name == "steps").multiline
    assert (again.sample_rate, again.channels, again.min_duration) == (48000, 2, 10.0)


def test_missing_files_names_each(turbo_folder, tmp_path):
    assert missing_pipeline_files(tmp_path) == ["model_index.json"]
    assert missing_pipeline_files(turbo_folder) == []
    (tmp_path / "model_index.json").write_text((turbo_folder / "model_index.json").read_text())
    missing = missing_pipeline_files(tmp_path)
    assert "tokenizer/tokenizer_config.json" in missing and "scheduler/scheduler_config.json" in missing
    assert any(m.startswith("text_encoder/model.safetensors") for m in missing)
    assert any(m.startswith("condition_encoder/diffusion_pytorch_model.safetensors") for m in missing)


def test_unknown_variant():
    from tagcore.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="xl-turbo"):
        w.CHECKPOINTS.repo("large")

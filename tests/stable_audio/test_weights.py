"""Weights: limits come from the configuration, gated downloads say what to do, nothing is fetched implicitly."""
from __future__ import annotations

import json

import pytest

from tag_stable_audio import weights as w
from tagcore.errors import WeightsMissing
from tagcore.weights import missing_pipeline_files


def test_limits_come_from_the_config(sa3_folder, sao_folder, tmp_path):
    from tag_stable_audio.backend import StableAudio3Backend, StableAudioOpenBackend

    assert StableAudio3Backend({"weights": str(sa3_folder)}).max_duration == 6.0
    assert StableAudioOpenBackend({"weights": str(sao_folder)}).max_duration == pytest.approx(344 * 512 / 44100)
    config = json.loads((sa3_folder / "duration_embedder" / "config.json").read_text())
    edited = tmp_path / "longer"
    edited.mkdir()
    (edited / "duration_embedder").mkdir()
    (edited / "duration_embedder" / "config.json").write_text(json.dumps({**config, "max_val": 120.0}))
    assert w.sa3_max_duration(edited) == 120.0


def test_worker_refuses_what_the_checkpoint_cannot_make(sa3):
    from tagcore.config import Config
    from tagcore.errors import InvalidRequest
    from tagcore.messages import SoundRequest
    from tagcore.validation import validate_request
    from tagcore.spec import BackendSpec

    config = Config(max_duration=600.0)
    family = BackendSpec.from_attributes(type(sa3))
    validate_request(SoundRequest("rain", 300.0, "stable_audio_3"), family, config)  # the family allows it
    with pytest.raises(InvalidRequest, match="1 to 6 s"):
        validate_request(SoundRequest("rain", 300.0, "stable_audio_3"), type(sa3).spec(sa3.settings), config)


def test_a_gated_refusal_says_licence_and_token(monkeypatch, tmp_path):
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    def refuse(repo_id, **kwargs):
        import httpx2  # huggingface_hub's own HTTP client: its errors carry the response

        response = httpx2.Response(401, request=httpx2.Request("GET", f"https://huggingface.co/{repo_id}"))
        raise GatedRepoError(f"401 Client Error: access to {repo_id} is restricted", response=response)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    with pytest.raises(WeightsMissing) as raised:
        w.pull(w.SA3, "small-music", tmp_path)
    message = raised.value.message
    assert "https://huggingface.co/stabilityai/stable-audio-3-small-music" in message
    assert "Stability AI Community License" in message and "HF_TOKEN" in message


def test_offline_pull_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsMissing, match="could not"):  # HF_HUB_OFFLINE=1 in the test suite
        w.pull(w.SAO, "1.0", tmp_path)


def test_unknown_variant(tmp_path):
    from tagcore.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="small-sfx, small-music, medium"):
        w.SA3.repo("large")


def test_missing_files_names_each(sa3_folder, tmp_path):
    assert missing_pipeline_files(tmp_path) == ["model_index.json"]
    assert missing_pipeline_files(sa3_folder) == []
    (tmp_path / "model_index.json").write_text((sa3_folder / "model_index.json").read_text())
    missing = missing_pipeline_files(tmp_path)
    assert "tokenizer/tokenizer_config.json" in missing and "scheduler/scheduler_config.json" in missing
    assert any(m.startswith("text_encoder/model.safetensors") for m in missing)

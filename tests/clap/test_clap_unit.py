"""Fast checks of the CLAP scorer that need no model: settings, file checks, windowing, FAD maths, registration."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tagcore import plugins
from tagcore.audio_types import Audio
from tagcore.config import load_config
from tagcore.errors import ConfigError, InvalidRequest, WeightsMissing
from tagcore.runtime import build_scorer
from tag_clap import hubfiles
from tag_clap.fad import frechet_distance, reference_clips
from tag_clap.model import SAMPLE_RATE, WINDOW_FRAMES, ClapModel, center_window, prepare
from tag_clap.scorer import ClapScorer
from tag_clap.settings import ClapSettings


def test_settings_come_from_env_and_file_section(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('scorer = "clap"\n[clap]\namodel = "HTSAT-base"\nenable_fusion = true\n')
    config = load_config(path, environ={"TAG_CLAP_CHECKPOINT": str(tmp_path / "c.pt"), "TAG_CLAP_BATCH_SIZE": "3"})
    settings = ClapSettings.from_config(config)
    assert settings == ClapSettings(checkpoint=str(tmp_path / "c.pt"), amodel="HTSAT-base", enable_fusion=True,
                                    batch_size=3)


@pytest.mark.parametrize("environ", [{"TAG_CLAP_AMODEL": "PANN-14"}, {"TAG_CLAP_BATCH_SIZE": "0"},
                                     {"TAG_CLAP_ENABLE_FUSION": "maybe"}, {"TAG_CLAP_CHEKPOINT": "x.pt"}])
def test_bad_settings_are_config_errors(environ):
    with pytest.raises(ConfigError):
        ClapSettings.from_config(load_config(environ=environ))


def test_scorer_is_registered_and_built_from_config(tmp_path):
    assert "clap" in plugins.scorers()
    scorer = build_scorer(load_config(environ={"TAG_SCORER": "clap", "TAG_CLAP_CHECKPOINT": str(tmp_path / "x.pt")}))
    assert isinstance(scorer, ClapScorer) and scorer.model.module is None  # nothing loads until a score is asked


def test_missing_checkpoint_is_named_before_laion_clap_loads(tmp_path):
    model = ClapModel(ClapSettings(checkpoint=str(tmp_path / "630k-audioset-best.pt")))
    with pytest.raises(WeightsMissing, match="630k-audioset-best.pt does not exist"):
        model.load()
    with pytest.raises(WeightsMissing, match="no CLAP checkpoint configured"):
        ClapModel(ClapSettings()).load()


def test_missing_hub_files_are_listed(tmp_path, monkeypatch):
    from huggingface_hub import constants

    checkpoint = tmp_path / "c.pt"
    checkpoint.write_bytes(b"x")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    assert hubfiles.missing_text_files() == ["config.json", "vocab.json", "merges.txt",
                                             "model.safetensors or pytorch_model.bin"]
    with pytest.raises(WeightsMissing, match="huggingface-cli download roberta-base"):
        ClapModel(ClapSettings(checkpoint=str(checkpoint))).load()


def test_empty_tokenizer_is_recognised(tmp_path):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trained = ByteLevelBPETokenizer()
    trained.train_from_iterator(["rain on a roof", "a dog barks"] * 5, vocab_size=300, special_tokens=specials)
    (tmp_path / "full").mkdir()
    trained.save_model(str(tmp_path / "full"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(specials)}))
    (tmp_path / "empty" / "merges.txt").write_text("#version: 0.2\n")
    full = RobertaTokenizer(str(tmp_path / "full" / "vocab.json"), str(tmp_path / "full" / "merges.txt"))
    empty = RobertaTokenizer(str(tmp_path / "empty" / "vocab.json"), str(tmp_path / "empty" / "merges.txt"))
    assert not hubfiles.tokenizer_is_empty(full)
    assert hubfiles.tokenizer_is_empty(empty)


def test_window_is_the_centre_ten_seconds_at_48k():
    ramp = np.arange(WINDOW_FRAMES + 1000, dtype=np.float32)
    assert np.array_equal(center_window(ramp), ramp[500:500 + WINDOW_FRAMES])
    assert center_window(ramp[:10]).shape == (10,)
    stereo = Audio(np.stack([np.full(16000 * 12, 0.1), np.full(16000 * 12, 0.3)]), 16000)
    prepared = prepare(stereo)
    assert prepared.shape == (WINDOW_FRAMES,) and prepared.dtype == np.float32
    assert np.abs(prepared).max() == pytest.approx(10 ** (-1 / 20), rel=1e-3)  # peak at -1 dBFS
    assert prepare(Audio(np.ones(SAMPLE_RATE), SAMPLE_RATE)).shape == (SAMPLE_RATE,)


def test_score_needs_one_prompt_per_clip(tmp_path):
    scorer = ClapScorer(load_config(environ={"TAG_CLAP_CHECKPOINT": str(tmp_path / "x.pt")}))
    with pytest.raises(InvalidRequest):
        scorer.score(["a", "b"], [Audio(np.zeros(10), 16000)])
    assert scorer.score([], []) == []


def test_frechet_distance_matches_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    shifted = a + np.array([1.0, 2.0, 0.0])
    assert frechet_distance(a, shifted) == pytest.approx(5.0, rel=1e-6)
    scaled = a * 2.0  # mean x2, covariance x4: |mu|^2 + tr(C) + 4 tr(C) - 2 * 2 tr(C)
    mu = a.mean(axis=0)
    assert frechet_distance(a, scaled) == pytest.approx(mu @ mu + np.trace(np.cov(a, rowvar=False)), rel=1e-6)
    few = frechet_distance(rng.normal(size=(3, 16)), rng.normal(size=(3, 16)))  # singular covariances
    assert np.isfinite(few) and few >= 0
    with pytest.raises(InvalidRequest):
        frechet_distance(a[:1], a)


def test_reference_folder_needs_two_clips(tmp_path):
    from tagcore.audio import write

    with pytest.raises(InvalidRequest, match="does not exist"):
        reference_clips(tmp_path / "nope")
    write(tmp_path / "a.wav", Audio(np.zeros(1600), 16000))
    with pytest.raises(InvalidRequest, match="at least 2"):
        reference_clips(tmp_path)
    write(tmp_path / "b.flac", Audio(np.zeros(1600), 16000))
    assert len(reference_clips(tmp_path)) == 2


def test_official_checkpoint_layout_loads_without_running_code(tmp_path):
    """LAION's files hold epoch, name, optimizer state with a numpy float64 learning rate and module.-prefixed
    weights: all of it passes the allow-list, and the weights come back without the prefix."""
    import torch

    from tag_clap.model import _read_state_dict
    from tag_testkit.tiny_clap import official_layout

    state = {"text_branch.embeddings.position_ids": torch.arange(4)[None], "logit_scale_a": torch.ones(())}
    path = tmp_path / "630k-audioset-best.pt"
    torch.save(official_layout(state), path)
    loaded = _read_state_dict(path)
    assert list(loaded) == ["logit_scale_a"] and torch.equal(loaded["logit_scale_a"], torch.ones(()))


def test_malicious_clap_checkpoint_never_runs(tmp_path):
    import torch

    from tag_clap.model import _read_state_dict
    from tag_testkit import malicious
    from tag_testkit.tiny_clap import official_layout

    marker = tmp_path / "pwned"
    path = malicious.torch_checkpoint(tmp_path / "clap.pt", marker, official_layout({"w": torch.zeros(1)}))
    with pytest.raises(WeightsMissing, match=f"CLAP checkpoint {path} is unsafe or corrupt"):
        _read_state_dict(path)
    malicious.assert_not_run(marker)
    garbage = malicious.random_bytes(tmp_path / "garbage.pt")
    with pytest.raises(WeightsMissing, match=f"CLAP checkpoint {garbage} is (unsafe or )?corrupt"):
        _read_state_dict(garbage)

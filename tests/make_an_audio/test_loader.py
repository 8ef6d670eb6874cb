"""Loading the official layout: every way a weights folder can be wrong gives WeightsMissing naming the file."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from tag_testkit import malicious
from tagcore.config import Config
from tagcore.errors import WeightsMissing
from tagcore.runtime import build_backend
from tag_testkit.backends import loaded_on_cpu


class NotATensor:
    """A pickled object that weights_only loading must refuse."""


@pytest.fixture
def folder(tiny_weights, tmp_path) -> Path:
    """A private copy of the tiny folder that a test may break."""
    return Path(shutil.copytree(tiny_weights, tmp_path / "weights"))


def load(folder: Path):
    from tag_make_an_audio.backend import MakeAnAudioBackend

    backend = loaded_on_cpu(MakeAnAudioBackend, folder)
    return backend


def rewrite_ldm(folder: Path, change) -> None:
    path = folder / "maa1_full.ckpt"
    sd = torch.load(path, weights_only=True)["state_dict"]
    torch.save(change(sd), path)


def test_no_folder_configured(monkeypatch):
    from tag_make_an_audio.backend import MakeAnAudioBackend

    monkeypatch.delenv("TAG_MAKE_AN_AUDIO_WEIGHTS", raising=False)
    with pytest.raises(WeightsMissing, match="TAG_MAKE_AN_AUDIO_WEIGHTS"):
        MakeAnAudioBackend({"device": "cpu"}).ensure_loaded()
    assert not MakeAnAudioBackend.weights_status({}).present


@pytest.mark.parametrize("name, hint", [
    ("maa1_full.ckpt", "Google Drive"),
    ("bigvgan/best_netG.pt", "Google Drive"),
    ("bigvgan/args.yml", "Google Drive"),
    ("bert-base-uncased/vocab.txt", "bert-base-uncased"),
])
def test_missing_file_is_named_with_how_to_get_it(folder, name, hint):
    from tag_make_an_audio.backend import MakeAnAudioBackend

    (folder / name).unlink()
    status = MakeAnAudioBackend.weights_status({"weights": str(folder)})
    assert not status.present and name in status.detail
    with pytest.raises(WeightsMissing) as error:
        load(folder)
    assert str(folder / name) in error.value.message and hint in error.value.message


def test_checkpoint_without_text_encoder_is_refused(folder):
    """The official strict=False loader would silently run an untrained text branch here."""
    rewrite_ldm(folder, lambda sd: {"state_dict": {k: v for k, v in sd.items() if not k.startswith("cond_stage_model.")}})
    with pytest.raises(WeightsMissing, match="cond_stage_model"):
        load(folder)


@pytest.mark.parametrize("dropped, part", [
    ("model.diffusion_model.output_blocks.0.0.in_layers.2.weight", "UNet"),
    ("first_stage_model.decoder.up.1.block.0.conv1.bias", "VAE"),
    ("cond_stage_model.caption_encoder.base.encoder.layer.1.output.dense.weight", "text encoder"),
    ("cond_stage_model.caption_encoder.projection.linear2.weight", "text encoder"),
    ("alphas_cumprod", "schedule"),
])
def test_checkpoint_missing_one_tensor_is_refused(folder, dropped, part):
    rewrite_ldm(folder, lambda sd: {"state_dict": {k: v for k, v in sd.items() if k != dropped}})
    with pytest.raises(WeightsMissing) as error:
        load(folder)
    assert part in error.value.message and "maa1_full.ckpt" in error.value.message


def test_wrong_shape_is_refused(folder):
    key = "model.diffusion_model.out.2.weight"
    rewrite_ldm(folder, lambda sd: {"state_dict": sd | {key: torch.zeros(4, 32, 1, 1)}})
    with pytest.raises(WeightsMissing, match="wrong shape"):
        load(folder)


def test_truncated_checkpoint(folder):
    path = folder / "maa1_full.ckpt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsMissing, match="unreadable or truncated"):
        load(folder)


def test_pickled_objects_are_never_unpickled(folder):
    torch.save({"generator": {"conv_pre.bias": NotATensor()}}, folder / "bigvgan" / "best_netG.pt")
    with pytest.raises(WeightsMissing, match="other than tensors"):
        load(folder)


@pytest.mark.parametrize("name", ["maa1_full.ckpt", "bigvgan/best_netG.pt"])
def test_malicious_checkpoint_never_runs_and_is_named_unsafe(folder, tmp_path, name):
    marker = tmp_path / "pwned"
    malicious.torch_checkpoint(folder / name, marker)
    with pytest.raises(WeightsMissing, match=f"{folder / name} is unsafe or corrupt") as caught:
        load(folder)
    malicious.assert_not_run(marker)
    assert "weights_only" not in caught.value.message


def test_garbage_checkpoint_is_called_corrupt_without_torch_advice(folder):
    path = malicious.random_bytes(folder / "maa1_full.ckpt")
    with pytest.raises(WeightsMissing, match=f"{path} is unsafe or corrupt") as caught:
        load(folder)
    message = caught.value.message
    assert "weights_only" not in message and "trusted source" not in message
    assert message.rstrip().endswith("WEIGHTS/maa1_full.ckpt")  # ends with how to get it, not torch advice


def test_wrong_container_entry(folder):
    rewrite_ldm(folder, lambda sd: {"model": sd})
    with pytest.raises(WeightsMissing, match="no 'state_dict'"):
        load(folder)


def test_broken_vocoder_args(folder):
    (folder / "bigvgan" / "args.yml").write_text("num_mels: 80\n")
    with pytest.raises(WeightsMissing, match="upsample_rates"):
        load(folder)


def test_weights_from_environment_and_config(tiny_weights, monkeypatch):
    from tag_make_an_audio.backend import MakeAnAudioBackend

    monkeypatch.setenv("TAG_MAKE_AN_AUDIO_WEIGHTS", str(tiny_weights))
    status = MakeAnAudioBackend.weights_status({})
    assert status.present and status.location == str(tiny_weights)
    monkeypatch.delenv("TAG_MAKE_AN_AUDIO_WEIGHTS")
    config = Config(backends={"make_an_audio": {"weights": str(tiny_weights)}}, device="cpu")
    backend = build_backend("make_an_audio", config)
    assert backend.settings["weights"] == str(tiny_weights) and backend.settings["device"] == "cpu"
    assert type(backend).weights_status(backend.settings).present


def test_vocoder_with_another_hop_is_refused(folder):
    """A 128-sample-hop BigVGAN (5 stages) cannot turn this VAE's mels into 16 kHz audio of the right length."""
    import yaml
    from bigvgan import BigVGAN
    from bigvgan.env import AttrDict

    from tag_testkit.make_an_audio_tiny import TINY, value, vocoder_args

    args = vocoder_args(TINY) | {"upsample_rates": [4, 4, 2, 2, 2], "upsample_kernel_sizes": [8, 8, 4, 4, 4]}
    template = BigVGAN(AttrDict(args)).state_dict()
    sd = {k: v if k.endswith(".filter") else value(k, tuple(v.shape)) for k, v in template.items()}
    (folder / "bigvgan" / "args.yml").write_text(yaml.safe_dump(args))
    torch.save({"generator": sd}, folder / "bigvgan" / "best_netG.pt")
    with pytest.raises(WeightsMissing, match="upsamples by 128"):
        load(folder)

"""`tag models check make_an_audio DIR` and `tag models pull make_an_audio --dest DIR` (offline part)."""
from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from tagcore import plugins
from tagcore.cli import cli


def invoke(*args: str):
    plugins.get_plugin_manager().hook.register_commands(cli=cli)  # what `tag` (cli.main) does at start
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_check_accepts_a_complete_folder(tiny_weights):
    result = invoke("models", "check", "make_an_audio", str(tiny_weights))
    assert result.exit_code == 0, result.output
    assert "complete" in result.output


def test_check_lists_what_is_missing(tiny_weights, tmp_path):
    folder = Path(shutil.copytree(tiny_weights, tmp_path / "w"))
    (folder / "bigvgan" / "best_netG.pt").unlink()
    (folder / "bert-base-uncased" / "vocab.txt").write_text("hello\nworld\n")
    result = invoke("models", "check", "make_an_audio", str(folder))
    assert result.exit_code == 1
    assert "best_netG.pt is missing" in result.output and "Google Drive" in result.output
    assert "[CLS]" in result.output


def test_check_reads_checkpoint_keys(tiny_weights, tmp_path):
    import torch

    folder = Path(shutil.copytree(tiny_weights, tmp_path / "w"))
    sd = torch.load(folder / "maa1_full.ckpt", weights_only=True)["state_dict"]
    torch.save({"state_dict": {k: v for k, v in sd.items() if not k.startswith("cond_stage_model.")}},
               folder / "maa1_full.ckpt")
    result = invoke("models", "check", "make_an_audio", str(folder))
    assert result.exit_code == 1 and "BERT text encoder" in result.output


def test_pull_offline_explains_where_each_file_goes(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dest = tmp_path / "useful_ckpts"
    result = invoke("models", "pull", "make_an_audio", "--dest", str(dest))
    assert result.exit_code == 1
    assert f"{dest / 'maa1_full.ckpt'}" in result.output and f"{dest / 'bigvgan' / 'best_netG.pt'}" in result.output
    assert "could not fetch vocab.txt" in result.output
    assert dest.is_dir()


def test_pull_on_a_complete_folder_succeeds_without_network(tiny_weights, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = invoke("models", "pull", "make_an_audio", "--dest", str(tiny_weights))
    assert result.exit_code == 0, result.output

"""`tag models pull make_an_audio --dest DIR` and `tag models check make_an_audio DIR`.

Plugins share the `tag models pull` / `tag models check` groups: each adds a subcommand named after its backend.
Only the tokenizer can be fetched automatically (Hugging Face hub); the model files live on Google Drive behind
a confirmation page, so the command says exactly where to get them and where to put them, then verifies.
"""
from __future__ import annotations

import os
from pathlib import Path

import click

from tagcore.commands import subgroup

from . import checkpoint as ckpt
from .verify import problems

TOKENIZER_REPO = "google-bert/bert-base-uncased"


def fetch_vocab(dest: Path) -> str:
    """Download bert-base-uncased's vocab.txt into dest/bert-base-uncased/ (needs the network)."""
    from huggingface_hub import hf_hub_download

    target = dest / Path(ckpt.VOCAB_FILE).parent
    target.mkdir(parents=True, exist_ok=True)
    return hf_hub_download(TOKENIZER_REPO, "vocab.txt", local_dir=str(target))


def report(folder: Path) -> bool:
    """Print the folder's state; True when it is complete."""
    found = problems(folder)
    if found:
        click.echo(f"{folder} is not complete yet:")
        for line in found:
            click.echo(f"  - {line}")
        return False
    click.echo(f"{folder} is complete. Use it with: tag generate \"...\" -b make_an_audio -O weights={folder}")
    return True


def register(cli: click.Group) -> None:
    models = subgroup(cli, "models", "Download and check model weights.")
    pull = subgroup(models, "pull", "Fetch a backend's weights (what can be fetched) and check the folder.")
    check = subgroup(models, "check", "Check a backend's weights folder without loading the model.")

    @pull.command("make_an_audio")
    @click.option("--dest", type=click.Path(file_okay=False, path_type=Path), required=True,
                  help="Weights folder to fill (the official useful_ckpts layout).")
    def pull_make_an_audio(dest: Path) -> None:
        """Fetch the tokenizer, say where the Google-Drive files go, then verify DEST."""
        dest.mkdir(parents=True, exist_ok=True)
        if not (dest / ckpt.VOCAB_FILE).is_file():
            try:
                fetch_vocab(dest)
                click.echo(f"fetched {TOKENIZER_REPO} vocab.txt -> {dest / ckpt.VOCAB_FILE}")
            except Exception as exc:  # offline, hub errors: say what to do instead
                click.echo(f"could not fetch vocab.txt ({type(exc).__name__}: {exc}); "
                           f"{ckpt.HOW_TO_GET[ckpt.VOCAB_FILE]} -> {dest / ckpt.VOCAB_FILE}")
        layout = ckpt.Layout(dest)
        if {ckpt.LDM_FILE, ckpt.VOCODER_FILE, ckpt.VOCODER_ARGS} & set(layout.missing()):
            click.echo(f"The model files cannot be fetched automatically: {ckpt.DRIVE_HINT}. From that folder put")
            click.echo(f"  maa1_full.ckpt        -> {dest / ckpt.LDM_FILE}")
            click.echo(f"  bigvgan/args.yml      -> {dest / ckpt.VOCODER_ARGS}")
            click.echo(f"  bigvgan/best_netG.pt  -> {dest / ckpt.VOCODER_FILE}")
            click.echo(f"then run: tag models check make_an_audio {dest}")
        if not report(dest):
            raise SystemExit(1)

    @check.command("make_an_audio")
    @click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
    def check_make_an_audio(folder: Path | None) -> None:
        """Verify FOLDER (default: TAG_MAKE_AN_AUDIO_WEIGHTS) without loading the model."""
        folder = folder or ckpt.weights_folder({}, os.environ)
        if folder is None:
            raise ckpt.no_folder_error()
        if not report(folder):
            raise SystemExit(1)

"""`tag models pull stable_audio_3 --variant small-sfx --dest DIR` (and stable_audio_open), `tag models check ...`.

The only place the plugin downloads: the hub repositories are gated, so a refusal says exactly what the user has
to do (accept the licence on the hub, set HF_TOKEN); the licence is theirs to accept.
"""
from __future__ import annotations

from pathlib import Path

import click

from tagcore.commands import subgroup

from . import weights as w
from .backend import DiffusersAudioBackend, StableAudio3Backend, StableAudioOpenBackend


def report(folder: Path, backend: type[DiffusersAudioBackend]) -> None:
    """Say whether `folder` is complete; WeightsMissing (exit 2) naming what is not."""
    backend.checkpoints.check(backend.checkpoints.local(folder))
    click.echo(f"{folder} is complete ({backend.limit(folder):g} s clips at most). Use it with: "
               f"tag generate \"...\" -b {backend.name} -O weights={folder}")


def register(cli: click.Group) -> None:
    models = subgroup(cli, "models", "Download and check model weights.")
    pull = subgroup(models, "pull", "Fetch a backend's weights (what can be fetched) and check the folder.")
    check = subgroup(models, "check", "Check a backend's weights folder without loading the model.")

    for backend in (StableAudio3Backend, StableAudioOpenBackend):
        checkpoints = backend.checkpoints

        @pull.command(backend.name, help=f"Download {backend.name} weights ({checkpoints.licence}: accept it on the "
                                         f"hub first and set HF_TOKEN) into DEST.")
        @click.option("--variant", type=click.Choice(list(checkpoints.variants)), default=checkpoints.default,
                      show_default=True)
        @click.option("--dest", type=click.Path(file_okay=False, path_type=Path), required=True,
                      help="Folder to fill (the hub layout, model_index.json at its root).")
        def pull_command(variant: str, dest: Path, backend: type[DiffusersAudioBackend] = backend) -> None:
            dest.mkdir(parents=True, exist_ok=True)
            click.echo(f"downloading {backend.checkpoints.repo(variant)} into {dest} ...")
            w.pull(backend.checkpoints, variant, dest)
            report(dest, backend)

        @check.command(backend.name, help=f"Check a {backend.name} weights folder without loading the model.")
        @click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
        def check_command(folder: Path, backend: type[DiffusersAudioBackend] = backend) -> None:
            report(folder, backend)

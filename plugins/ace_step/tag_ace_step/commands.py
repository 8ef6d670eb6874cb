"""`tag models pull ace_step --dest DIR` and `tag models check ace_step DIR`.

`pull` is the only place the plugin downloads; the weights are MIT-licensed and not gated, so it needs no token.
"""
from __future__ import annotations

from pathlib import Path

import click

from tagcore.commands import subgroup

from . import weights as w


def report(folder: Path) -> None:
    """Say whether `folder` is complete; WeightsMissing (exit 2) naming what is not."""
    w.CHECKPOINTS.check(w.CHECKPOINTS.local(folder))
    roles = "continuation and variation" if w.has_codec(folder) else "continuation only (no audio tokenizer)"
    click.echo(f"{folder} is complete (songs of up to {w.max_duration(folder):g} s; audio prompts: {roles}). "
               f"Use it with: tag generate \"...\" -b ace_step -O weights={folder} -O lyrics=\"...\"")


def register(cli: click.Group) -> None:
    models = subgroup(cli, "models", "Download and check model weights.")
    pull = subgroup(models, "pull", "Fetch a backend's weights (what can be fetched) and check the folder.")
    check = subgroup(models, "check", "Check a backend's weights folder without loading the model.")

    @pull.command("ace_step", help=f"Download ACE-Step 1.5 weights ({w.CHECKPOINTS.licence} licence, not gated) "
                                   "into DEST.")
    @click.option("--variant", type=click.Choice(list(w.CHECKPOINTS.variants)), default=w.CHECKPOINTS.default,
                  show_default=True)
    @click.option("--dest", type=click.Path(file_okay=False, path_type=Path), required=True,
                  help="Folder to fill (the hub layout, model_index.json at its root).")
    def pull_command(variant: str, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        click.echo(f"downloading {w.CHECKPOINTS.repo(variant)} into {dest} ...")
        w.pull(variant, dest)
        report(dest)

    @check.command("ace_step", help="Check an ace_step weights folder without loading the model.")
    @click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
    def check_command(folder: Path) -> None:
        report(folder)

"""Adds `tag bench` to the `tag` command group."""
from tagcore import hookimpl

from .cli import bench


@hookimpl
def register_commands(cli) -> None:
    cli.add_command(bench)

"""Adds `tag bench` to the `tag` command group."""
import click

from tagcore import hookimpl

from .cli import bench


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(bench)

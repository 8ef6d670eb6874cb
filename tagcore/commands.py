"""Helpers for plugins that add `tag` subcommands (hook `register_commands`)."""
from __future__ import annotations

import click


def subgroup(parent: click.Group, name: str, help_text: str) -> click.Group:
    """The subgroup `name` of `parent`, created if no plugin made it yet, so several plugins can share
    `tag models pull` / `tag models check` whatever order they register in."""
    existing = parent.commands.get(name)
    if isinstance(existing, click.Group):
        return existing
    group = click.Group(name, help=help_text)
    parent.add_command(group)
    return group

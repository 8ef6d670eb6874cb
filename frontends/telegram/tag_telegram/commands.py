"""`tag bot`: the command this plugin adds to the `tag` group."""
from __future__ import annotations

import click

from tagcore.cli import metrics_options, run_frontend, service_options


@click.command()
@service_options
@metrics_options
@click.pass_context
def bot(ctx: click.Context, transport_name: str | None, backend_names: tuple[str, ...],
        option_pairs: tuple[str, ...], device: str | None, warmup: bool, metrics_port: int | None,
        metrics_host: str) -> None:
    """Run the Telegram bot (token from TAG_TELEGRAM_TOKEN or the config file)."""
    run_frontend(ctx, "telegram", {}, transport_name, backend_names, option_pairs, device, warmup,
                 metrics_host=metrics_host, metrics_port=metrics_port)

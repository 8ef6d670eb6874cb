"""`tag serve`: the command this plugin adds to the `tag` group."""
from __future__ import annotations

import click

from tagcore.cli import run_frontend, service_options


@click.command()
@service_options
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default 8000).")
@click.pass_context
def serve(ctx: click.Context, transport_name: str | None, backend_names: tuple[str, ...],
          option_pairs: tuple[str, ...], device: str | None, warmup: bool, host: str | None, port: int | None) -> None:
    """Run the HTTP API and web page."""
    settings = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    run_frontend(ctx, "http", settings, transport_name, backend_names, option_pairs, device, warmup)

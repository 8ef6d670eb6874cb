"""The `tag` command line: generate clips, list backends, run workers and frontends.

Commands parse and validate everything before any model loads, so a typo costs milliseconds, not a model load.
Errors that a user can fix exit with code 2 and one sentence; failed generations exit with code 1.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from . import audio as audio_io
from . import plugins
from .backend import Backend
from .catalog import BackendCatalog
from .config import Config, load_config
from .errors import USER_ERRORS, InvalidRequest, TagError, is_user_error_code
from .messages import ProgressEvent, SoundRequest, SoundResponse
from .metrics import Metrics
from .options import misplaced, parse_key_values
from .output_path import OutputPlan, plan_output, rescue_path
from .prompts_file import PromptEntry, read_prompts_file
from .spec import BackendSpec
from .requester import DEFAULT_DURATION, Requester
from .runtime import build_backend, build_scorer, build_transport, client_catalog, installed_specs
from .threads import ThreadShare
from .transport import Transport
from .validation import default_duration
from .worker import GeneratorService, served_specs, start_embedded_worker

CLI_PRIORITY = 1
"""Rank of CLI requests among sources (tagcore.fairness): between the bot (0) and the API (2) by default."""
CANCEL_CONFIRM_S = 10.0
"""Seconds `tag generate` waits after Ctrl-C for the workers to confirm the cancel."""


class TagGroup(click.Group):
    """Turns TagError into a one-line message and an exit code instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TagError as error:
            click.echo(f"Error: {error.message}", err=True)
            ctx.exit(2 if isinstance(error, USER_ERRORS) else 1)


@click.group(cls=TagGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tag-audio", prog_name="tag")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML configuration file (default: $TAG_CONFIG or ~/.config/tag/config.toml).")
@click.option("-v", "--verbose", is_flag=True, help="Log what workers and plugins do (tracebacks included).")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: bool) -> None:
    """TAG: text-to-audio generation from the command line, a Telegram bot, an HTTP API and worker pools."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:  # failures reach the user as one-line errors; tracebacks only on request
        logging.getLogger("tagcore.worker").setLevel(logging.CRITICAL)
    ctx.obj = {"config_path": config_path}


def _config(ctx: click.Context) -> Config:
    obj = ctx.find_root().obj or {}
    if "config" not in obj:
        obj["config"] = load_config(obj.get("config_path"))
    return obj["config"]


def _split_options(spec: BackendSpec, raw: Mapping[str, str], device: str | None
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split parsed `-O KEY=VALUE` pairs into (worker settings, request options) by each option's declared scope,
    and check both. Each comes back as given, resolved: under the option's own name (not an alias), parsed to its
    type; options not given are left out, so the configuration's worker settings still apply to them."""
    canonical = {o.name: o.name for o in spec.options} | {a: o.name for o in spec.options for a in o.aliases}
    scopes = {o.name: o.scope for o in spec.options}
    worker = {k: v for k, v in raw.items() if scopes.get(canonical.get(k, "")) == "worker"}
    request = {k: v for k, v in raw.items() if scopes.get(canonical.get(k, "")) != "worker"}
    if device and device != "auto":
        if "device" not in scopes:
            raise InvalidRequest(f"{spec.name} has no device choice (it does not run a model on a device)")
        worker["device"] = device
    worker_values = spec.resolve_worker_options(worker)
    request_values = spec.resolve_request_options(request)
    return ({canonical[k]: worker_values[canonical[k]] for k in worker},
            {canonical[k]: request_values[canonical[k]] for k in request})


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT/SIGTERM so long-running commands shut down cleanly."""
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: Any) -> None:
        click.echo(f"received signal {signum}, finishing the current job and stopping...", err=True)
        stop.set()

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _watch(stop: threading.Event, *checks: Callable[[], str | None], interval: float = 0.5) -> list[str]:
    """Sets `stop` when a check reports a failure (a transport or worker thread that died); the caller raises
    the returned failures after its clean shutdown, so that the process exits non-zero and gets restarted."""
    failures: list[str] = []

    def watch() -> None:
        while not stop.wait(interval):
            failure = next((f for f in (check() for check in checks) if f), None)
            if failure:
                failures.append(failure)
                stop.set()

    threading.Thread(target=watch, name="tag-watchdog", daemon=True).start()
    return failures


def _raise_failures(failures: list[str]) -> None:
    if failures:
        raise TagError(f"stopped because {failures[0]}", code="transport_failed")


def _build_backends(config: Config, names: Sequence[str], pairs: Sequence[str],
                    device: str | None) -> dict[str, Backend]:
    """Build (not load) the named backends; `-O` pairs go to every backend that declares the option."""
    raw = parse_key_values(pairs)
    built: dict[str, Backend] = {}
    for name in names:
        cls = plugins.backends().get(name)
        declared = {o.name for o in cls.options} | {a for o in cls.options for a in o.aliases}
        mine = {k: v for k, v in raw.items() if k in declared}
        spec = BackendSpec.from_attributes(cls)
        worker, request = _split_options(spec, mine, device if "device" in declared else None)
        if request:  # a worker reads only worker options: a request option here would be silently ignored
            option = next(o for o in cls.options if o.name in request)
            raise InvalidRequest(misplaced(option, cls.name))
        built[cls.name] = build_backend(cls.name, config, worker)
    unused = set(raw) - {k for n in names for o in plugins.backends().get(n).options for k in (o.name, *o.aliases)}
    if unused:
        raise InvalidRequest(f"no chosen backend has option(s) {', '.join(sorted(unused))}")
    return built


def _load(backends: Mapping[str, Backend]) -> None:
    for name, backend in backends.items():
        click.echo(f"loading {name}...", err=True)
        backend.ensure_loaded()


def _start_embedded(config: Config, transport: Transport, backends: dict[str, Backend],
                    specs: Sequence[BackendSpec], metrics: Metrics | None = None
                    ) -> tuple[threading.Thread, threading.Event]:
    """A worker thread serving `backends`, whose `specs` the caller computed once (they may read weight files)."""
    source = transport.job_source(specs, prefetch=config.max_batch)
    service = GeneratorService(backends, source, config, scorer=build_scorer(config), specs=specs,
                               metrics=metrics)
    return start_embedded_worker(service)


# ------------------------------------------------------------------------------------------------ generate
@cli.command()
@click.argument("prompt", required=False)
@click.option("-d", "--duration", type=float, default=None,
              help="Length in seconds (default 10, or the prompts file's); for speech the longest clip accepted "
                   "(default: the longest allowed).")
@click.option("-b", "--backend", "backend_name", help="Backend name or alias (default from config).")
@click.option("-o", "--output", type=click.Path(),
              help="Output file, or folder (existing, or ending in /) to name the clip in (default: named after the "
                   "prompt, here).")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1),
              help="Seed for a reproducible clip (default: random, reported).")
@click.option("-n", "--candidates", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Generate N candidates and keep the best (by the configured scorer, else the first).")
@click.option("-O", "--option", "option_pairs", multiple=True, metavar="KEY=VALUE",
              help="Backend option, repeatable (see `tag backends`).")
@click.option("--format", "fmt", type=click.Choice(sorted(audio_io.FORMATS)),
              help="Output format (default from -o, else wav).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where the model runs.")
@click.option("--normalize", is_flag=True, help="Scale the clip to peak at -1 dBFS (no gain change otherwise).")
@click.option("--prompts", "prompts_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File of prompts: one per line, or CSV with prompt/caption and optional duration columns.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("out"), show_default=True,
              help="Folder for the clips of a prompts file.")
@click.option("--audio-prompt", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Audio to continue from (or a voice sample for speech backends).")
@click.option("--negative-prompt", help="What the clip should not sound like (backends that support it).")
@click.option("--transport", "transport_name", help="Transport (default from config: inprocess runs the model here).")
@click.option("--timeout", type=float, default=None, help="Seconds to wait for each answer (default from config).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line of metadata per clip.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def generate(ctx: click.Context, prompt: str | None, duration: float | None, backend_name: str | None,
             output: str | None, seed: int | None, candidates: int, option_pairs: tuple[str, ...], fmt: str | None,
             device: str | None, normalize: bool, prompts_file: Path | None, out_dir: Path,
             audio_prompt: Path | None, negative_prompt: str | None, transport_name: str | None,
             timeout: float | None, as_json: bool, quiet: bool) -> None:
    """Generate audio for PROMPT (or for every line of --prompts) and write it to a file."""
    config = _config(ctx)
    if (prompt is None) == (prompts_file is None):
        raise InvalidRequest("give either a PROMPT or --prompts FILE")
    raw_options = parse_key_values(option_pairs)
    entries = read_prompts_file(prompts_file) if prompts_file else [PromptEntry(prompt or "", None)]
    if output is not None and len(entries) > 1:
        raise InvalidRequest("-o names one file; use --out-dir with --prompts")
    plan = plan_output(output, fmt, out_dir if prompts_file and output is None else None)
    conditioning = audio_io.read(audio_prompt) if audio_prompt else None
    transport = build_transport(config, transport_name)
    stop = None
    try:
        backend, spec, request_options = _choose_backend(config, transport, backend_name, raw_options, device)
        catalog = BackendCatalog()  # the one spec this command asks for, resolved above
        catalog.add_installed([spec])
        requester = Requester(transport.client(), catalog, config, source="cli", priority=CLI_PRIORITY,
                              timeout=timeout)
        try:
            requests = []
            for number, entry in enumerate(entries, 1):
                try:
                    requests.append(requester.request(
                        entry.prompt, backend=spec, duration=duration if duration is not None else entry.duration,
                        seed=seed, options=request_options, candidates=candidates,
                        negative_prompt=negative_prompt, audio_prompt=conditioning))
                except InvalidRequest as error:
                    where = f"line {number} of {prompts_file}: " if prompts_file else ""
                    raise InvalidRequest(f"{where}{error.message}") from None
            if backend is not None:
                if not quiet:
                    click.echo(f"loading {spec.name}...", err=True)
                backend.ensure_loaded()
                _, stop = _start_embedded(config, transport, {spec.name: backend}, [spec])
            failures, mistakes = _run_requests(requester, requests, quiet, as_json, normalize, plan,
                                               numbered=prompts_file is not None)
        finally:
            requester.client.close()
    finally:
        if stop is not None:
            stop.set()
        transport.close()
    if failures:
        ctx.exit(2 if mistakes == failures else 1)


def _choose_backend(config: Config, transport: Transport, name: str | None, raw_options: Mapping[str, str],
                    device: str | None) -> tuple[Backend | None, BackendSpec, dict[str, Any]]:
    """The backend `tag generate` asks for: (the instance to run here or None, its spec, the request options)."""
    name = name or config.default_backend
    if transport.embedded:  # the model runs here: its class says what it can do with these worker options
        backend_cls = plugins.backends().get(name)
        worker_settings, request_options = _split_options(BackendSpec.from_attributes(backend_cls), raw_options,
                                                          device)
        backend = build_backend(backend_cls.name, config, worker_settings)
        return backend, BackendSpec.from_backend(backend_cls, backend.settings), request_options
    # a worker pool answers: its announced spec says what it can do
    spec = client_catalog(transport, config).resolve(name)
    worker_settings, request_options = _split_options(spec, raw_options, device)
    if worker_settings:
        raise InvalidRequest(f"option(s) {', '.join(worker_settings)} are set where the worker runs, not by a client")
    return None, spec, request_options


def _run_requests(requester: Requester, requests: list[SoundRequest], quiet: bool, as_json: bool, normalize: bool,
                  plan: OutputPlan, *, numbered: bool) -> tuple[int, int]:
    """Submit every request, write each answer as it comes; return (failures, failures that were mistakes).

    Answers are awaited one after the other, each within the per-answer timeout, so the last of a prompts file
    may come that many timeouts after submission: that is its deadline."""
    failures = mistakes = 0
    bars = {r.request_id: _progress_bar(r, quiet or as_json) for r in requests}
    sent: list[SoundRequest] = []
    answered: set[str] = set()
    try:
        for request in requests:  # a prompts file yields to other people's single requests (tagcore.fairness)
            sent.append(request)  # before it goes: a Ctrl-C during the submit cancels it too
            requester.submit(request, "cli", on_progress=bars[request.request_id],
                             timeout=requester.timeout * len(requests))
        for number, request in enumerate(requests):
            response = requester.wait(request.request_id)
            answered.add(request.request_id)
            bars[request.request_id].close()
            if not response.ok or response.audio is None:  # decoding guarantees audio in a successful answer
                failures += 1
                mistakes += is_user_error_code(response.error_code)
                click.echo(f"Error: {request.prompt[:60]!r}: {response.error_message} ({response.error_code})",
                           err=True)
                continue
            if response.metadata.get("scorer_error"):
                click.echo(f"Warning: {response.metadata['scorer_error']}", err=True)
            path = plan.path_for(response.prompt, response.seed, number if numbered else None)
            clip = audio_io.normalize(response.audio) if normalize else response.audio
            written = _write_clip(path, clip, plan.fmt)
            failures += written != path
            _report(written, response, as_json)
    except KeyboardInterrupt:
        for bar in bars.values():
            bar.close()
        _cancel(requester, [r for r in sent if r.request_id not in answered])
        click.get_current_context().exit(130)
    return failures, mistakes


def _write_clip(path: Path, clip: Any, fmt: str) -> Path:
    """Write the clip; if that fails after all (disk full, folder removed meanwhile), save it elsewhere rather
    than lose it, and say where."""
    try:
        return audio_io.write(path, clip, fmt)
    except OSError as exc:
        rescue = audio_io.write(rescue_path(path), clip, fmt)
        click.echo(f"Error: could not write {path} ({exc.strerror or exc}); the clip was saved to {rescue}",
                   err=True)
        return rescue


def _cancel(requester: Requester, requests: list[SoundRequest]) -> None:
    """Ctrl-C: cancel what is unanswered and wait briefly for the workers to confirm (a second Ctrl-C quits)."""
    for request in requests:
        requester.cancel(request.request_id)
    try:
        for request in requests:
            response = requester.wait(request.request_id, CANCEL_CONFIRM_S)
            state = "cancelled" if response.error_code == "cancelled" else "finished before the cancel arrived"
            click.echo(f"{request.prompt[:60]!r}: {state}", err=True)
    except (KeyboardInterrupt, TagError):
        click.echo(f"cancel sent for {len(requests)} request(s)", err=True)


class _progress_bar:
    """A tqdm bar driven by progress events (queue position, then percent)."""

    def __init__(self, request: SoundRequest, disabled: bool) -> None:
        self.label = request.prompt[:30]
        self.bar = tqdm(total=100, desc=self.label, disable=disabled, leave=False, file=sys.stderr,
                        bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}")
        self.lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        with self.lock:
            stage = f"queued #{event.position}" if event.stage == "queued" and event.position else event.stage
            self.bar.set_description_str(f"{self.label} [{stage}]", refresh=False)
            if event.stage != "queued":
                self.bar.n = int(round(event.fraction * 100))
            self.bar.refresh()

    def close(self) -> None:
        with self.lock:
            self.bar.close()


def _report(path: Path, response: SoundResponse, as_json: bool) -> None:
    # Speech backends deliver what the text needs, up to the requested duration: report the clip's own length.
    length = response.audio.duration if response.audio is not None else response.duration
    if as_json:
        click.echo(json.dumps({
            "file": str(path), "prompt": response.prompt, "duration": round(length, 3),
            "requested_duration": response.duration,
            "backend": response.backend, "model_id": response.model_id, "seed": response.seed,
            "timings": response.timings, "metadata": response.metadata, "worker": response.worker,
        }))
        return
    took = sum(v for k, v in response.timings.items() if k == "generate_s")
    click.echo(f"wrote {path} ({length:.3g} s, {response.backend}, seed {response.seed}"
               + (f", {took:.1f} s" if took else "") + ")")


# ------------------------------------------------------------------------------------------------ backends
@cli.command("backends")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--transport", "transport_name",
              help="Also list what workers announced on this transport, and whether a worker serves each now.")
@click.pass_context
def list_backends(ctx: click.Context, as_json: bool, transport_name: str | None) -> None:
    """List installed backends, their options with defaults, and whether their weights are present."""
    config = _config(ctx)
    classes = {cls.name: cls for cls in plugins.backends()}
    entries: list[tuple[BackendSpec, bool | None]]
    if transport_name:
        transport = build_transport(config, transport_name)
        try:
            entries = [(e.spec, e.available) for e in client_catalog(transport, config).entries()]
        finally:
            transport.close()
    else:
        entries = [(spec, None) for spec in installed_specs(config)]
    rows: list[dict[str, Any]] = []
    for spec, available in entries:
        cls = classes.get(spec.name)
        weights: dict[str, Any]
        if cls is None:
            weights = {"present": None, "location": "", "detail": "not installed here (announced by a worker)"}
        else:
            try:
                status = cls.weights_status(cls.resolve_worker_options(config.backend_settings(cls.name)))
                weights = {"present": status.present, "location": status.location, "detail": status.detail}
            except TagError as error:
                weights = {"present": False, "location": "", "detail": error.message}
        row: dict[str, Any] = {
            "name": spec.name, "aliases": list(spec.aliases), "description": spec.description,
            "sample_rate": spec.sample_rate, "channels": spec.channels,
            "native_max_duration": spec.native_max_duration, "min_duration": spec.min_duration,
            "max_duration": spec.max_duration, "variable_length": spec.variable_length,
            "capabilities": dataclasses.asdict(spec.capabilities), "audio_prompt_roles": list(spec.audio_prompt_roles),
            "features": spec.capabilities.features(spec.audio_prompt_roles),
            "options": [{"name": o.name, "type": o.type, "default": o.default, "scope": o.scope, "help": o.help,
                         "choices": list(o.choices), "minimum": o.minimum, "maximum": o.maximum}
                        for o in spec.options],
            "weights": weights,
        }
        if available is not None:
            row["available"] = available
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no backends installed (check TAG_PLUGINS / `tag plugins`)")
    for row in rows:
        alias = f" (aliases: {', '.join(row['aliases'])})" if row["aliases"] else ""
        click.echo(f"{row['name']}{alias}: {row['description']}")
        caps = ", ".join(row["features"]) or "none"
        bound = " as a bound (clips last as long as their content)" if row["variable_length"] else ""
        click.echo(f"  {row['sample_rate']} Hz, {row['min_duration']:g}-{row['max_duration']:g} s{bound} "
                   f"(native window {row['native_max_duration']:g} s); supports: {caps}")
        if "available" in row:
            click.echo("  served by a worker now" if row["available"] else "  unavailable: no worker serves it now")
        w = row["weights"]
        if w["present"] is None:
            click.echo(f"  weights: {w['detail']}")
        else:
            state = "present" if w["present"] else "MISSING"
            click.echo(f"  weights: {state} at {w['location']}" + (f" ({w['detail']})" if w["detail"] else ""))
        settings = [f"{o['name']}={o['default']!s}" for o in row["options"]]
        width = max(map(len, settings), default=0)
        for o, setting in zip(row["options"], settings):
            extra = f" [{'|'.join(o['choices'])}]" if o["choices"] else ""
            bounds = ""
            if o["minimum"] is not None or o["maximum"] is not None:
                low = o["minimum"] if o["minimum"] is not None else ""
                high = o["maximum"] if o["maximum"] is not None else ""
                bounds = f" ({low}..{high})"
            scope = " (worker)" if o["scope"] == "worker" else ""
            click.echo(f"    -O {setting:<{width}}  {o['type']}{extra}{bounds}{scope}: {o['help']}")


@cli.command("plugins")
def list_plugins() -> None:
    """List loaded plugins (entry points filtered by TAG_PLUGINS, plus TAG_PLUGIN_MODULES)."""
    for name, module in sorted(plugins.loaded_plugins(), key=lambda p: p[0]):
        click.echo(f"{name}: {getattr(module, '__name__', module)}")
    for name, error in sorted(plugins.broken.items()):
        click.echo(f"{name}: FAILED TO LOAD ({error})")


@cli.command("config")
@click.pass_context
def show_config(ctx: click.Context) -> None:
    """Show the effective configuration (secrets hidden) and where it came from."""
    shown = _config(ctx).redacted(plugins.settings_sections())
    sections = shown.pop("sections")
    for key, value in shown.items():
        click.echo(f"{key} = {value}")
    for name, table in sections.items():
        click.echo(f"[{name}]")
        for key, value in table.items():
            click.echo(f"{key} = {value}")


# ------------------------------------------------------------------------------------------------ services
def service_options(func):
    """The options every long-running service shares (`tag worker`, and the frontends' `tag bot`/`tag serve`)."""
    func = click.option("--transport", "transport_name", help="Transport (default from config).")(func)
    func = click.option("-b", "--backend", "backend_names", multiple=True,
                        help="Backend to serve, repeatable (default from config).")(func)
    func = click.option("-O", "--option", "option_pairs", multiple=True, metavar="KEY=VALUE",
                        help="Worker option of the served backends (weights, dtype...).")(func)
    func = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where models run.")(func)
    func = click.option("--warmup", is_flag=True,
                        help="Before taking requests, prepare each backend for clips of its default length at batch 1 "
                             "and the largest batch (CUDA graphs, compiled kernels) instead of on first use.")(func)
    return func


def metrics_options(func):
    """`--metrics-port`/`--metrics-host`: Prometheus metrics on an HTTP server of their own (worker, bot)."""
    func = click.option("--metrics-host", default="127.0.0.1", show_default=True,
                        help="Address of the metrics server (0.0.0.0 to let Prometheus reach it from elsewhere).")(func)
    func = click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
                        help="Serve Prometheus metrics at http://HOST:PORT/metrics (default: no metrics server).")(func)
    return func


@contextmanager
def _metrics_server(metrics: Metrics, host: str, port: int | None) -> Iterator[None]:
    """Serve `metrics` while the block runs (commands: until the command ends), when a port was given."""
    if port is None:
        yield
        return
    try:
        server = metrics.serve(host, port)
    except OSError as exc:
        raise InvalidRequest(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    click.echo(f"metrics on {server.url}", err=True)
    try:
        yield
    finally:
        server.close()


def warm_up_backends(backends: Mapping[str, Backend], config: Config, max_batch: int,
                     specs: Sequence[BackendSpec] | None = None) -> list[str]:
    """`--warmup`: prepare every loaded backend for requests of its default length at batch 1 and at the
    worker's largest batch (`Backend.warm_up`); returns one line per backend saying what it spent. `specs` are
    the served ones when the caller has them (default: computed here), in the order of `backends`."""
    lines = []
    for (name, backend), spec in zip(backends.items(), specs if specs is not None else served_specs(backends)):
        seconds = default_duration(spec, config, DEFAULT_DURATION)
        sizes = sorted({1, max_batch if backend.capabilities.batch else 1})
        spent = backend.warm_up([(seconds, size) for size in sizes])
        lines.append(f"warm-up: {name}, {seconds:g} s clips at batch {' and '.join(map(str, sizes))}: {spent:.1f} s")
    return lines


@cli.command()
@service_options
@click.option("--max-batch", type=click.IntRange(1, 256),
              help="Most requests generated together (default from config).")
@click.option("--threads", type=click.IntRange(1, 1024), default=None,
              help="CPU threads of the models (default: the machine's cores / the workers running on it).")
@metrics_options
@click.pass_context
def worker(ctx: click.Context, transport_name: str | None, backend_names: tuple[str, ...],
           option_pairs: tuple[str, ...], device: str | None, warmup: bool, max_batch: int | None,
           threads: int | None, metrics_port: int | None, metrics_host: str) -> None:
    """Run a generator worker: take requests from a transport, generate, answer. Stops cleanly on SIGTERM."""
    config = _config(ctx)
    transport = build_transport(config, transport_name)
    if transport.embedded:
        raise InvalidRequest(f"transport {transport.name!r} only reaches this process; run a worker with a broker "
                             "(--transport rabbitmq), or use `tag bot`/`tag serve`, which embed one")
    names = list(backend_names) or [config.default_backend]
    metrics = Metrics()
    ctx.with_resource(_metrics_server(metrics, metrics_host, metrics_port))  # a busy port costs no model load
    backends = _build_backends(config, names, option_pairs, device)
    _load(backends)
    batch = max_batch or config.max_batch
    specs = served_specs(backends)  # once per start: a spec may read the weights' own config
    if warmup:
        for line in warm_up_backends(backends, config, batch, specs):
            click.echo(line, err=True)
    # Jobs held by a worker that cannot batch them would only wait here while other workers sit idle.
    prefetch = batch if all(b.capabilities.batch for b in backends.values()) else 1
    source = transport.job_source(specs, prefetch=prefetch)
    share = ThreadShare(threads)
    service = GeneratorService(backends, source, config, scorer=build_scorer(config), max_batch=batch,
                               threads=share, specs=specs, metrics=metrics)
    logging.getLogger("tagcore.jobs").setLevel(logging.INFO)  # a worker's access log: one line per job
    click.echo(f"worker {service.worker_id} serving {', '.join(backends)} on {transport.name}", err=True)
    with _stop_on_signals() as stop, share:
        click.echo(f"CPU threads: {share.applied}" + (" (fixed)" if threads else
                   f" ({share.cores} cores / {share.workers()} worker(s) on this machine)"), err=True)
        failures = _watch(stop, transport.failure)
        try:
            service.run(stop)
        finally:
            stop.set()
            source.close()
            transport.close()
    _raise_failures(failures)
    click.echo(f"worker stopped after {service.served} clips", err=True)


def run_frontend(ctx: click.Context, name: str, settings: dict[str, Any], transport_name: str | None,
                 backend_names: tuple[str, ...], option_pairs: tuple[str, ...], device: str | None,
                 warmup: bool = False, *, metrics_host: str = "127.0.0.1", metrics_port: int | None = None) -> None:
    """Run the registered frontend `name` until SIGINT/SIGTERM; for a command a frontend plugin registers.

    With the in-process transport the `-b` backends are loaded here and served by an embedded worker, which
    records into the frontend's metrics; with a `metrics_port` those are served on a port of their own."""
    config = _config(ctx)
    frontend_cls = plugins.frontends().get(name)
    transport = build_transport(config, transport_name)
    stop_worker = None
    settings = config.section(name) | settings
    checks: list[Callable[[], str | None]] = [transport.failure]
    if transport.embedded:
        names = [plugins.backends().get(n).name for n in backend_names or [config.default_backend]]
        settings.setdefault("backends", names)  # offer users only what this process serves
    elif option_pairs or backend_names or warmup:
        raise InvalidRequest("-b/-O/--warmup choose embedded workers; with a broker, start workers with `tag worker`")
    backends: dict[str, Backend] = {}
    specs: list[BackendSpec] = []
    if transport.embedded:  # their specs, once: the frontend's catalog starts with them, the worker announces them
        backends = _build_backends(config, names, option_pairs, device)
        specs = served_specs(backends)
        transport.catalog().add_installed(specs)
    frontend = frontend_cls(config, transport, settings)  # checks the frontend's settings before any model loads
    ctx.with_resource(_metrics_server(frontend.metrics, metrics_host, metrics_port))
    if transport.embedded:
        _load(backends)
        if warmup:
            for line in warm_up_backends(backends, config, config.max_batch, specs):
                click.echo(line, err=True)
        worker_thread, stop_worker = _start_embedded(config, transport, backends, specs, frontend.metrics)
        checks.append(lambda: None if worker_thread.is_alive() or stop_worker.is_set()
                      else "the embedded worker stopped")
    with _stop_on_signals() as stop:
        failures = _watch(stop, *checks)
        try:
            frontend.run(stop)
        finally:
            stop.set()
            if stop_worker is not None:
                stop_worker.set()
            transport.close()
    _raise_failures(failures)


def main() -> None:
    """Console-script entry point: plugins may add commands before the group runs."""
    try:
        plugins.get_plugin_manager().hook.register_commands(cli=cli)
    except TagError as error:
        click.echo(f"Error: {error.message}", err=True)
        sys.exit(2)
    cli()

"""`tag bench`: speed, memory and (with a CLAP checkpoint) quality of backends over a prompt set."""
from __future__ import annotations

import datetime as dt
import os
import shlex
import sys
from pathlib import Path

import click
from tqdm import tqdm

from tagcore.audio import read
from tagcore.config import Config, load_config
from tagcore.errors import InvalidRequest
from tagcore.options import parse_key_values

from .prompts import bundled_prompts_path, load_prompts
from .quality import build_quality
from .report import environment, markdown_table, write_all, write_csv
from .runner import Plan, Row, count_runs, run_plan
from .speech_quality import build_speech_quality


def _numbers(text: str, kind: type, what: str) -> list:
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidRequest(f"{what} must be a comma-separated list of numbers, not {text!r}") from None
    if not values:
        raise InvalidRequest(f"{what} is empty")
    return values


def _config(ctx: click.Context) -> Config:
    obj = ctx.find_root().obj or {}
    if "config" not in obj:
        obj["config"] = load_config(obj.get("config_path"))
    return obj["config"]


def _command_line() -> str:
    """The command as typed (global options such as --config included), or a plain `tag bench` when invoked
    from Python, where sys.argv belongs to someone else."""
    if "bench" not in sys.argv[1:]:
        return "tag bench"
    return "tag " + " ".join(shlex.quote(a) for a in sys.argv[1:])


@click.command()
@click.option("-b", "--backend", "backends", multiple=True, required=True, help="Backend to benchmark (repeatable).")
@click.option("--prompts", "prompts_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Prompt file: one per line, or CSV with a prompt/caption column (AudioCaps). "
                   "Default: the bundled 50-prompt TAG set.")
@click.option("-n", "--limit", type=click.IntRange(1), default=8, show_default=True,
              help="Use the first N prompts of the set.")
@click.option("--steps", "steps_text", default="", help="Steps to sweep, e.g. 10,25,100 (backends with a steps option).")
@click.option("--batch", "batch_text", default="1", show_default=True, help="Batch sizes, e.g. 1,4.")
@click.option("-d", "--duration", "duration_text", default="5", show_default=True, help="Clip lengths (s), e.g. 5,10.")
@click.option("-O", "--option", "option_pairs", multiple=True, metavar="[BACKEND.]KEY=VALUE",
              help="Backend option (worker ones like device/dtype/weights, or request ones like guidance); "
                   "BACKEND.KEY=VALUE sets it for that backend only, e.g. -O audiogen.weights=/models/ag.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the first clip (then +1 per clip).")
@click.option("--clap-checkpoint", type=click.Path(dir_okay=False), default=None,
              help="LAION CLAP .pt file for CLAP scores (default: [clap] checkpoint / TAG_CLAP_CHECKPOINT; "
                   "without one the CLAP column is n/a).")
@click.option("--fad-reference", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of reference clips: adds FAD over CLAP embeddings (needs a CLAP checkpoint).")
@click.option("--asr-model", default=None, metavar="DIR",
              help="Whisper model folder (transformers layout, e.g. openai/whisper-small downloaded): adds the WER "
                   "of speech backends' clips against their prompt text (without it the WER column is n/a).")
@click.option("--speaker-encoder", default=None, metavar="DIR",
              help="*ForXVector speaker-verification folder (the speecht5 backend's, e.g. "
                   "microsoft/wavlm-base-plus-sv): adds speaker similarity to --voice-sample for cloning backends.")
@click.option("--voice-sample", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Voice sample every voice-cloning backend clones from (without it they use their default voice "
                   "and speaker similarity is n/a).")
@click.option("--warmup/--no-warmup", default=True, show_default=True,
              help="Run one untimed batch per backend before measuring.")
@click.option("--note", default="", help="Free text recorded in results.md and meta.json (e.g. what the weights are).")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Result folder (default: bench-results/<date-time>).")
@click.pass_context
def bench(ctx: click.Context, backends, prompts_path, limit, steps_text, batch_text, duration_text, option_pairs,
          seed, clap_checkpoint, fad_reference, asr_model, speaker_encoder, voice_sample, warmup, note,
          out_dir) -> None:
    """Benchmark backends: one row per backend x steps x batch x duration, written as CSV, markdown and PNG.

    Speech backends also get WER (with --asr-model) and, when cloning --voice-sample, speaker similarity
    (with --speaker-encoder)."""
    config = _config(ctx)
    now = dt.datetime.now(dt.timezone.utc)
    plan = Plan(
        backends=list(backends), prompts=load_prompts(prompts_path, limit),
        steps=_numbers(steps_text, int, "--steps") if steps_text else (),
        batches=_numbers(batch_text, int, "--batch"), durations=_numbers(duration_text, float, "--duration"),
        options=parse_key_values(option_pairs), seed=seed, warmup=warmup,
        voice_sample=read(voice_sample) if voice_sample else None,
    )
    if fad_reference is not None and len(plan.prompts) < 2:
        raise InvalidRequest("FAD needs at least 2 generated clips per run: use --limit 2 or more")
    quality = build_quality(config, clap_checkpoint, fad_reference)
    speech = build_speech_quality(asr_model, speaker_encoder)
    load_start = os.getloadavg()[0]
    folder = out_dir or Path("bench-results") / now.strftime("%Y%m%d-%H%M%S")
    rows: list[Row] = []
    with tqdm(total=count_runs(plan), unit="batch", file=sys.stderr, dynamic_ncols=True) as bar:
        def tick(label: str) -> None:
            bar.set_description(label)
            bar.update(1)

        for backend_rows in run_plan(plan, config, quality, tick, speech):
            rows.extend(backend_rows)
            folder.mkdir(parents=True, exist_ok=True)
            write_csv(rows, folder / "results.csv")  # a crash or Ctrl-C later keeps what is measured
    meta = {
        "date": now.isoformat(timespec="seconds"),
        "command": _command_line(),
        "prompts": str(prompts_path or bundled_prompts_path().name), "prompt_count": len(plan.prompts),
        "seed": seed, "warmup": warmup, "clap_model": quality.model_id,
        "fad_reference": str(fad_reference) if fad_reference else None,
        "speech_scores": speech.describe(), "voice_sample": str(voice_sample) if voice_sample else None,
        "environment": environment(), "load_average_start": load_start, "load_average_end": os.getloadavg()[0],
        "note": note or None,
    }
    written = write_all(rows, meta, folder)
    click.echo(markdown_table(rows))
    click.echo(f"\nwrote {', '.join(str(p) for p in written)}")

"""Writing benchmark results: CSV (every column), a markdown table with the setup, PNG plots, meta.json."""
from __future__ import annotations

import csv
import json
import os
import platform
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from .runner import COLUMNS, NA, Row

HEADERS = {
    "backend": "backend", "model_id": "model", "device": "device", "dtype": "dtype", "steps": "steps",
    "batch": "batch", "duration": "clip s", "audio_s": "audio s", "clips": "clips", "load_s": "cold load s", "s_per_clip": "s/clip",
    "rtf": "RTF", "clips_per_s": "clips/s", "peak_rss_mb": "peak RSS MiB", "cuda_peak_mb": "CUDA peak MiB",
    "clap": "CLAP", "fad": "FAD", "wer": "WER", "speaker_sim": "speaker sim",
}
PACKAGES = ("tag-audio", "torch", "numpy", "transformers", "laion-clap", "audiocraft", "diffusers")


def cpu_name() -> str:
    """The processor's name where the platform reports one, else the architecture (e.g. x86_64)."""
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Machine and package versions, so a row can be compared only with rows from a like setup."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    info: dict[str, Any] = {
        "python": sys.version.split()[0], "platform": platform.platform(),
        "cpu": cpu_name(),
        "versions": versions, "gpu": "none",
    }
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    info["cpu_count"] = os.cpu_count()
    return info


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def write_dict_csv(path: Path, fields: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """One CSV with a header of `fields` and one line per row; a key not in `fields` is an error (csv raises)."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_csv(rows: Sequence[Row], path: Path) -> Path:
    return write_dict_csv(path, COLUMNS, (asdict(row) for row in rows))


def table(header: Sequence[str], body: Iterable[Sequence[str]]) -> str:
    """A markdown table from already formatted cells, so every writer lays tables out the same way."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def show(text: str, out: Path | None) -> None:
    """Print a result page, and write it to `out` when one was asked for."""
    print(text)
    if out is not None:
        out.write_text(text)


def markdown_table(rows: Sequence[Row]) -> str:
    values = (asdict(row) for row in rows)
    return table([HEADERS[c] for c in COLUMNS], ([_cell(v[c]) for c in COLUMNS] for v in values))


def _load_line(meta: Mapping[str, Any]) -> str:
    """The machine's 1-minute load average around the run: other jobs on the same cores slow every row."""
    start, end = meta.get("load_average_start"), meta.get("load_average_end")
    if start is None or end is None:
        return ""
    return f"- load average (1 min): {start:.2f} at start, {end:.2f} at end, on {meta['environment']['cpu_count']} cores\n"


def _speech_lines(meta: Mapping[str, Any]) -> str:
    """Which models measured WER and speaker similarity, or why they are n/a."""
    scores = meta.get("speech_scores")
    if not scores:
        return ""
    sample = meta.get("voice_sample") or "none (cloning backends speak in their default voice)"
    return (f"- WER: {scores['wer']}\n- speaker sim: {scores['speaker_sim']}\n"
            f"- voice sample: {sample}\n")


def write_markdown(rows: Sequence[Row], meta: Mapping[str, Any], path: Path) -> Path:
    env = meta["environment"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    text = (
        f"# tag bench results ({meta['date']})\n\n"
        f"- machine: {env['platform']}, CPU {env['cpu']} ({env.get('cpu_count', '?')} cores), GPU: {env['gpu']}\n"
        f"- versions: Python {env['python']}, {versions}\n"
        f"- prompts: {meta['prompts']} ({meta['prompt_count']} prompts), seed {meta['seed']}, "
        f"warm-up {'on' if meta['warmup'] else 'off'}\n"
        f"- CLAP: {meta['clap_model']}\n"
        + _speech_lines(meta) +
        f"- command: `{meta['command']}`\n"
        + _load_line(meta) + (f"- note: {meta['note']}\n" if meta.get("note") else "") + "\n"
        "clip s is the requested length, audio s the mean length produced (speech follows its text); "
        "s/clip is generation time per clip (batch time / clips in it); RTF = generation time / audio produced "
        "(below 1: faster than real time); cold load is the first model load in this process; peak RSS is the process's resident "
        "memory, CUDA peak the allocator's maximum (n/a without a GPU); CLAP is the mean raw cosine, comparable "
        "only under the same CLAP checkpoint; WER is the word error rate of an ASR transcript against the prompt "
        "text (speech backends; 0 is perfect), speaker sim the mean cosine of the voice sample's and each clip's "
        "speaker embeddings (voice-cloning backends), comparable only under the same scoring models.\n\n"
        + markdown_table(rows) + "\n"
    )
    path.write_text(text)
    return path


def _series(rows: Sequence[Row], key: Callable[[Row], tuple]) -> dict[tuple, list[Row]]:
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for row in rows:
        groups[key(row)].append(row)
    return groups


def _plot(path: Path, title: str, xlabel: str, ylabel: str, rows: Sequence[Row], x: Callable[[Row], Any],
          y: Callable[[Row], Any], group: Callable[[Row], tuple], label: Callable[[tuple], str], empty: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    usable = [r for r in rows if x(r) != NA and y(r) != NA]
    for key, members in sorted(_series(usable, group).items(), key=lambda kv: str(kv[0])):
        members = sorted(members, key=x)
        ax.plot([x(r) for r in members], [y(r) for r in members], marker="o", label=label(key))
    if usable:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(rows: Sequence[Row], folder: Path) -> list[Path]:
    """speed_vs_steps.png, clap_vs_steps.png, throughput_vs_batch.png (with a note where nothing applies)."""
    by_cell = lambda r: (r.backend, r.batch, r.duration)  # noqa: E731
    cell_label = lambda k: f"{k[0]} batch {k[1]}, {k[2]:g} s"  # noqa: E731
    return [
        _plot(folder / "speed_vs_steps.png", "Seconds per clip vs steps", "steps", "s/clip", rows,
              lambda r: r.steps, lambda r: r.s_per_clip, by_cell, cell_label,
              "no benchmarked backend has a steps option"),
        _plot(folder / "clap_vs_steps.png", "CLAP score vs steps", "steps", "CLAP (mean cosine)", rows,
              lambda r: r.steps, lambda r: r.clap, by_cell, cell_label,
              "CLAP n/a: no CLAP checkpoint given, or no backend has a steps option"),
        _plot(folder / "throughput_vs_batch.png", "Throughput vs batch size", "batch size", "clips per second", rows,
              lambda r: r.batch, lambda r: r.clips_per_s,
              lambda r: (r.backend, r.steps, r.duration), lambda k: f"{k[0]} steps {k[1]}, {k[2]:g} s",
              "no rows"),
    ]


def write_all(rows: Sequence[Row], meta: Mapping[str, Any], folder: Path, plots: bool = True) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = [write_csv(rows, folder / "results.csv"), write_markdown(rows, meta, folder / "results.md")]
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    written.append(folder / "meta.json")
    if plots:
        written.extend(write_plots(rows, folder))
    return written

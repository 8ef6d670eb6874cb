"""What the transport benchmarks share: a baseline commit's `tag_rabbitmq` timed beside this tree's, each round
in fresh child processes taking turns (so load from elsewhere falls on both alike), and their percentiles."""
from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from .report import table

ROOT = Path(__file__).resolve().parents[2]
CODES = ("baseline", "this tree")


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank `q` quantile (0..1) of `values` (not empty)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def head_commit() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()


def baseline_tree(commit: str) -> Path:
    """A new folder holding the `tag_rabbitmq` package of `commit` (put it first on PYTHONPATH)."""
    folder = Path(tempfile.mkdtemp(prefix="tag-bench-baseline-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "transports/rabbitmq/tag_rabbitmq"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "transports" / "rabbitmq"


def child_env(url: str, prefix: str, pythonpath: Path | None) -> dict[str, str]:
    """The environment of a child on the broker at `url` with queues of its own (named from `prefix`) and no
    user configuration; `pythonpath` first on the import path (the baseline's code), or this tree's."""
    env = {**os.environ, "TAG_BROKER_URL": url, "TAG_CONFIG": "/nonexistent/tag-bench.toml",
           "TAG_RABBITMQ_REQUEST_QUEUE": f"{prefix}Request", "TAG_RABBITMQ_RESPONSE_QUEUE": f"{prefix}Response",
           "TAG_RABBITMQ_DEAD_LETTER_QUEUE": f"{prefix}Dead", "TAG_RABBITMQ_CATALOG_QUEUE": f"{prefix}Catalog"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def child_result(script: str, arguments: Sequence[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run `script` with `arguments` in a child process; the JSON object it printed last."""
    out = subprocess.run([sys.executable, script, *arguments], env=env, check=True, capture_output=True, text=True,
                         timeout=timeout).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def alternate(baseline: str, rounds: int, run: Callable[[Path | None, str], dict[str, Any]],
              progress: Callable[[dict[str, Any]], str]) -> dict[str, list[dict[str, Any]]]:
    """`rounds` rounds of `run(pythonpath, tag)`, the baseline commit's code then this tree's (pythonpath None);
    `tag` is unique per run (for queue names). `progress(result)` is printed to stderr after each round."""
    base = baseline_tree(baseline)
    results: dict[str, list[dict[str, Any]]] = {code: [] for code in CODES}
    try:
        for round_ in range(rounds):
            results["baseline"].append(run(base, f"b{round_}"))
            results["this tree"].append(run(None, f"t{round_}"))
            print(f"round {round_ + 1}: " + ", ".join(f"{code} {progress(runs[-1])}" for code, runs in results.items()),
                  file=sys.stderr)
    finally:
        shutil.rmtree(base.parents[1], ignore_errors=True)
    return results


def report_head(title: str, command: str, setup: str) -> list[str]:
    """The first lines of a result page: title, date, machine and versions, the command, what was measured."""
    return [f"# {title}", "", f"- date: {datetime.date.today().isoformat()}",
            f"- machine: {platform.machine()}, {os.cpu_count()} cores; Python {platform.python_version()}, "
            f"pika {version('pika')}, broker private node (Debian rabbitmq-server)",
            f"- command: `{command}`", f"- {setup}", ""]


def code_table(results: dict[str, list[dict[str, Any]]], baseline: str, header: Sequence[str],
               cells: Callable[[list[dict[str, Any]]], Sequence[str]]) -> str:
    """A markdown table with one row per code (named with its commit): `cells` of all its runs together."""
    names = {"baseline": f"baseline ({baseline})", "this tree": f"this tree ({head_commit()})"}
    return table(["code", *header], ([names[code], *cells(results[code])] for code in CODES))


def round_table(results: dict[str, list[dict[str, Any]]], cell: Callable[[dict[str, Any]], str]) -> str:
    """A markdown table with one row per round, one `cell(result)` per code."""
    rounds = len(results["baseline"])
    return table(["round", *CODES], ([str(i + 1), *(cell(results[code][i]) for code in CODES)]
                                     for i in range(rounds)))

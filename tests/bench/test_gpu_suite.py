"""benchmarks/gpu_suite.sh --smoke: every GPU suite stage runs on the CPU with tiny models and fills one table, so
the script a lent GPU gets (for minutes, by chance) has run before; and the table's own rules (tag_bench.gpu_suite)."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tag_bench import gpu_suite

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_suite.sh"


def stage_names() -> list[str]:
    return subprocess.run(["bash", str(SCRIPT), "--list"], capture_output=True, text=True, check=True).stdout.split()


@pytest.mark.slow
@pytest.mark.timeout(960)  # the script's own smoke budget is 900 s (stages cut to what is left), beyond the default
def test_smoke_runs_every_stage_into_one_table(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    env = dict(os.environ, PYTHON=sys.executable, GPU_SUITE_WORK=str(work), GPU_SUITE_COMMIT="abc123")
    done = subprocess.run(["bash", str(SCRIPT), "--smoke", str(out)], env=env, capture_output=True, text=True,
                          timeout=900, cwd=ROOT)
    text = (out / "log.txt").read_text() if (out / "log.txt").exists() else done.stdout + done.stderr
    # every stage's start and end line (a timed-out stage says rc 124), then the end of the log
    log = "\n".join(line for line in text.splitlines() if line.startswith("== ")) + "\n...\n" + text[-3000:]
    assert done.returncode == 0, log

    stages = stage_names()
    assert gpu_suite.check(out, stages) == [], log
    with (out / "gpu_suite.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == gpu_suite.COLUMNS
        rows = list(reader)
    recorded = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in recorded} == set(stages)
    assert all(r["variant"] != gpu_suite.FAILED for r in recorded), log
    assert {r["commit"] for r in rows} == {"abc123"}
    assert {r["device"] for r in rows if r["backend"] != "tests"} == {"cpu"}
    for stage in set(stages) - {"cuda_tests", "audiogen_tokens", "maa_scopes"}:  # these measure no clip time
        timed = [r for r in recorded if r["stage"] == stage and r["s_per_clip"] != ""]
        assert timed and all(float(r["s_per_clip"]) > 0 for r in timed), stage
    tokens = next(r for r in recorded if r["stage"] == "audiogen_tokens")
    assert tokens["sampler"] == "greedy" and "identical" in tokens["notes"]
    scopes = [r for r in recorded if r["stage"] == "maa_scopes"]
    assert {r["variant"] for r in scopes} == {f"compile scope {scope}, {start}" for scope in ("unet", "blocks")
                                              for start in ("cold", "restart")}
    assert all(float(r["warmup_s"]) >= 0 for r in scopes)
    tests = next(r for r in recorded if r["stage"] == "cuda_tests")["notes"]
    assert "passed" in tests or "skipped" in tests  # skipped here, without CUDA
    assert len(list(out.iterdir())) <= 8  # all the device tool brings back
    assert not any(p.is_dir() for p in out.iterdir())


def test_a_failed_stage_gets_a_row_and_fails_the_check(tmp_path):
    gpu_suite.record(tmp_path, [gpu_suite.make_row(backend="audiogen", variant="tiny", device="cpu", batch=1,
                                                   s_per_clip=0.25, stage="a")])
    gpu_suite.failed(tmp_path, "b", "musicgen", 124, 60)
    assert gpu_suite.check(tmp_path, ["a", "b"]) == ["stage b: no row"]
    lines = (tmp_path / "gpu_suite.md").read_text()
    assert "stage b: timed out after 60 s" in lines and "| a | audiogen | tiny | cpu |" in lines


def test_numbers_that_do_not_parse_are_reported(tmp_path):
    gpu_suite.record(tmp_path, [gpu_suite.make_row(backend="x", s_per_clip="fast", stage="a")])
    assert gpu_suite.check(tmp_path, ["a"]) == ["row 1: s_per_clip 'fast' is not a number"]
    with pytest.raises(ValueError, match="not suite columns"):
        gpu_suite.make_row(backend="x", speed=1.0)


def test_merge_appends_runs_to_the_results_tables(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    for number in (1, 2):
        run = tmp_path / f"run{number}"
        gpu_suite.record(run, [gpu_suite.make_row(backend="audiogen", device="NVIDIA H200", batch=number,
                                                  s_per_clip=0.5, commit=f"c{number}", stage="s", notes="n")])
        assert gpu_suite.merge(run, results) == 1
    with (results / "gpu_suite.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["batch"], r["commit"]) for r in rows] == [("1", "c1"), ("2", "c2")]
    text = (results / "gpu_suite.md").read_text()
    assert text.count("## NVIDIA H200, commit") == 2 and text.startswith("# GPU suite results")

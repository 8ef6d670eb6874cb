"""A private Prometheus server for tests (Debian's `prometheus`), and `promtool check metrics`.

`PrometheusServer(folder, {"job": ["127.0.0.1:PORT"]})` writes a config that scrapes those targets every second
(paths given as "host:port/path"), starts the server on a free 127.0.0.1 port with its data in `folder`, and
answers PromQL through its HTTP API; stop it with `close` (by pid). Tests skip with a reason without the binary.
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

INSTALL_HINT = "apt-get install prometheus (Debian's package provides prometheus and promtool)"
SCRAPE_INTERVAL = "1s"


def require_prometheus() -> None:
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        pytest.skip(f"prometheus/promtool are not installed ({INSTALL_HINT})")


def promtool_problems(exposition: bytes) -> str:
    """`promtool check metrics` on an exposition: its complaints, empty when the text passes the linter."""
    require_prometheus()
    result = subprocess.run(["promtool", "check", "metrics"], input=exposition, capture_output=True, timeout=60)
    problems = (result.stdout + result.stderr).decode().strip()
    return problems if result.returncode or problems else ""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _scrape_config(jobs: Mapping[str, Sequence[str]]) -> str:
    """YAML (as JSON, which YAML reads) scraping each job's targets; a target may name a path after the port."""
    configs = []
    for job, targets in jobs.items():
        paths = {target.partition("/")[2] for target in targets}
        assert len(paths) == 1, "the targets of one job share their metrics path"
        configs.append({"job_name": job, "metrics_path": "/" + (paths.pop() or "metrics"),
                        "static_configs": [{"targets": [target.partition("/")[0] for target in targets]}]})
    return json.dumps({"global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL,
                                  "evaluation_interval": SCRAPE_INTERVAL}, "scrape_configs": configs})


class PrometheusServer:
    def __init__(self, folder: Path, jobs: Mapping[str, Sequence[str]]) -> None:
        require_prometheus()
        self.folder = folder
        config = folder / "prometheus.yml"
        config.write_text(_scrape_config(jobs))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(folder / "prometheus.log", "wb")
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=self.log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready(60)
        except BaseException:
            self.close()
            raise

    def _wait_ready(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited: {(self.folder / 'prometheus.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("prometheus did not become ready")

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the `data` of a successful answer (AssertionError with the error otherwise)."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                body = json.load(answer)
        except urllib.error.HTTPError as error:
            body = json.load(error)
        assert body.get("status") == "success", f"{path} {params}: {body.get('errorType')}: {body.get('error')}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector: [{"metric": {labels}, "value": [time, "text"]}, ...]."""
        data = self.api("query", query=expr)
        return list(data["result"]) if data["resultType"] == "vector" else [{"metric": {}, "value": data["result"]}]

    def wait_for(self, expr: str, predicate: Callable[[list[dict[str, Any]]], bool],
                 timeout: float = 60.0) -> list[dict[str, Any]]:
        """Query `expr` until `predicate(result)` holds (scrapes happen every second); the last result."""
        end = time.monotonic() + timeout
        result = self.query(expr)
        while not predicate(result):
            assert time.monotonic() < end, f"{expr} never satisfied the test; last result: {result}"
            time.sleep(0.5)
            result = self.query(expr)
        return result

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def values(result: list[dict[str, Any]], label: str) -> dict[str, float]:
    """label value -> sample value of an instant vector."""
    return {series["metric"].get(label, ""): float(series["value"][1]) for series in result}

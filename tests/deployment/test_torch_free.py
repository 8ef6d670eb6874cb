"""The bot and the API on a machine without torch, against a worker elsewhere (here: the main environment).

A separate virtual environment gets only tag-audio, tag-http, tag-telegram and tag-rabbitmq, at the versions in
uv.lock (`uv export --package ...`). `tag serve` and `tag bot` run from it over a real broker and learn the
backend from the worker's announcement alone: no backend package, no torch.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tag_testkit.broker import broker_env, cli_worker, delete_queues, rabbitmq_node, stop_process  # noqa: F401
from tag_testkit.fake_telegram import FakeTelegram
from tag_testkit.tone import tone_frequency
from tagcore import audio as audio_io

pytestmark = [pytest.mark.broker, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
FRONTEND_PACKAGES = ("tag-audio", "tag-http", "tag-telegram", "tag-rabbitmq")
API_KEY = "deployment-test-key"


def frontend_requirements() -> str:
    """The frontend machine's requirements: the four packages and their locked dependencies, nothing else."""
    command = ["uv", "export", "--frozen", "--no-hashes", "--no-dev", "--no-default-groups"]
    for package in FRONTEND_PACKAGES:
        command += ["--package", package]
    return subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def frontend_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("uv") is None:
        pytest.skip("uv is not on PATH (pip install uv)")
    folder = tmp_path_factory.mktemp("frontend") / "venv"
    requirements = folder.parent / "requirements.txt"
    requirements.write_text(frontend_requirements())
    subprocess.run(["uv", "venv", "--quiet", "--python", sys.executable, str(folder)], check=True)
    subprocess.run(["uv", "pip", "install", "--quiet", "--python", str(folder / "bin" / "python"),
                    "-r", str(requirements)], cwd=ROOT, check=True)
    return folder


def frontend_env(env: dict[str, str], **extra: str) -> dict[str, str]:
    """The frontend's environment: the broker settings, no test plugins, nothing of the main venv on the path."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV", "TAG_PLUGIN_MODULES", "TAG_PLUGINS")}
    return {**base, **env, "TAG_DEFAULT_BACKEND": "tone", "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost", **extra}


@pytest.fixture
def worker_env(rabbitmq_node) -> Iterator[dict[str, str]]:
    values = broker_env(rabbitmq_node)
    yield values
    if rabbitmq_node.accepting():
        delete_queues(rabbitmq_node, values, backends=("tone", "sine"))


def test_the_frontend_environment_has_no_torch_and_no_backend(frontend_venv):
    python = str(frontend_venv / "bin" / "python")
    missing = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True)
    assert missing.returncode != 0 and "No module named 'torch'" in missing.stderr
    present = subprocess.run([python, "-c", "import tag_http, tag_telegram, tag_rabbitmq, tagcore"],
                             capture_output=True, text=True)
    assert present.returncode == 0, present.stderr
    listed = subprocess.run([str(frontend_venv / "bin" / "tag"), "backends"], capture_output=True, text=True,
                            env=frontend_env({}))
    assert listed.returncode == 0 and "no backends installed" in listed.stdout


def _start(frontend_venv: Path, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen([str(frontend_venv / "bin" / "tag"), *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=log.parent)


def _wait(predicate, timeout: float, what: str, log: Path) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen in {timeout:g} s; log:\n{log.read_text()[-3000:]}")


def _health(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tag_serve_without_torch_lists_and_runs_a_remote_workers_backend(frontend_venv, worker_env, tmp_path):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    server = _start(frontend_venv, ["serve", "--transport", "rabbitmq", "--port", str(port)],
                    frontend_env(worker_env, TAG_HTTP_API_KEY=API_KEY, TAG_RABBITMQ_CATALOG_REFRESH="0.3"), log)
    worker = None
    try:
        _wait(lambda: _health(url), 60, "tag serve answering", log)
        headers = {"X-API-Key": API_KEY}
        assert httpx.get(f"{url}/v1/backends", headers=headers).json()["backends"] == []
        worker = cli_worker(worker_env)  # a worker started after the frontend shows up
        _wait(lambda: [b["available"] for b in httpx.get(f"{url}/v1/backends", headers=headers).json()["backends"]]
              == [True], 60, "the worker's backend listed as available", log)
        tone = httpx.get(f"{url}/v1/backends", headers=headers).json()["backends"][0]
        listed = subprocess.run([str(frontend_venv / "bin" / "tag"), "backends", "--transport", "rabbitmq", "--json"],
                                capture_output=True, text=True, env=frontend_env(worker_env), timeout=120)
        (row,) = json.loads(listed.stdout)
        assert row["name"] == "tone" and row["available"] and row["weights"]["present"] is None
        assert tone["name"] == "tone" and tone["aliases"] == ["sine"] and tone["sample_rate"] == 16000
        assert [o["name"] for o in tone["options"]] == ["amplitude", "delay", "fail", "reject"]
        bad = httpx.post(f"{url}/v1/jobs", headers=headers, json={"prompt": "x", "duration": 99, "backend": "sine"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
        assert "tone makes 1 to 30 s" in bad.json()["error"]["message"]  # the announced limits, checked here
        job = httpx.post(f"{url}/v1/jobs", headers=headers,
                         json={"prompt": "bell without torch", "duration": 1.5, "backend": "sine", "seed": 3})
        assert job.status_code == 202, job.text
        status_url = url + job.json()["links"]["status"]
        _wait(lambda: httpx.get(status_url, headers=headers).json()["state"] == "done", 60, "the job finishing", log)
        wav = httpx.get(f"{status_url}/audio?format=wav", headers=headers)
        clip = audio_io.decode(wav.content)
        assert clip.sample_rate == 16000 and clip.frames == 24000
        spectrum = np.abs(np.fft.rfft(clip.samples[0]))
        assert abs(np.argmax(spectrum) * 16000 / clip.frames - tone_frequency("bell without torch")) < 1.0
        stop_process(worker)  # the worker goes away: its backend stays listed, as unavailable
        _wait(lambda: [b["available"] for b in httpx.get(f"{url}/v1/backends", headers=headers).json()["backends"]]
              == [False], 60, "the backend listed as unavailable", log)
    finally:
        stop_process(server)
        if worker is not None:
            stop_process(worker)


def test_tag_bot_without_torch_answers_with_a_remote_workers_audio(frontend_venv, worker_env, tmp_path):
    log = tmp_path / "bot.log"
    worker = cli_worker(worker_env)
    with FakeTelegram() as fake:
        bot = _start(frontend_venv, ["bot", "--transport", "rabbitmq"],
                     frontend_env(worker_env, TAG_TELEGRAM_TOKEN=fake.token, TAG_TELEGRAM_API_URL=fake.base_url,
                                  TAG_TELEGRAM_POLL_TIMEOUT="1"), log)
        try:
            _wait(lambda: fake.polls > 0, 60, "the bot polling", log)
            fake.push_text(7, "thunder on a small vps")
            question = fake.wait_method("sendMessage", 7, timeout=30)[0]
            assert "reply_markup" in question.params, question.params["text"]
            buttons = {b["text"]: b["callback_data"] for row in json.loads(
                question.params["reply_markup"])["inline_keyboard"] for b in row}
            fake.push_callback(7, question, buttons["5 s"])
            voice = fake.wait_for(lambda c: c.method in ("sendVoice", "sendAudio") and c.chat_id == 7, 1, 60)[0]
            assert "thunder on a small vps" in voice.params["caption"] and "tone" in voice.params["caption"]
        finally:
            stop_process(bot)
            stop_process(worker)

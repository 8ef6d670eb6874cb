"""Cancelling over a real broker: queued requests are dropped unstarted, running ones stop between steps."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tag_testkit.tone import ToneBackend
from tag_testkit.broker import EventLog, ThreadWorker, broker_client, stop_process
from tag_testkit.signals import interruptible
from tagcore.messages import SoundRequest

pytestmark = pytest.mark.broker
LONG = 120.0
"""A job that would take two minutes: answered within a fraction of it only if the cancel stopped it."""


make_client = broker_client


def generating(log: EventLog, request_id: str) -> bool:
    return any(e.stage == "generating" and e.fraction > 0 for e in log.progress.get(request_id, []))


def test_cancel_stops_the_running_job_drops_the_queued_one_and_the_worker_moves_on(rabbitmq_node, env):
    worker = ThreadWorker(env, ["tone"], worker_id="w")
    transport, client, log = make_client(env)
    try:
        running = SoundRequest("long", 1.0, "tone", options={"delay": LONG})
        queued = SoundRequest("queued", 1.0, "tone", options={"delay": LONG})
        after = SoundRequest("after", 1.0, "tone")
        for request in (running, queued, after):
            client.submit(request)
        log.wait_for(lambda: generating(log, running.request_id), 60)
        client.cancel(queued.request_id)
        client.cancel(running.request_id)
        responses = log.wait_responses([running.request_id, queued.request_id, after.request_id], LONG / 2)
        assert responses[running.request_id].error_code == "cancelled"
        assert "while it was generated" in responses[running.request_id].error_message
        assert responses[queued.request_id].error_code == "cancelled"
        assert "before it started" in responses[queued.request_id].error_message
        assert responses[after.request_id].ok  # the worker moved on
        assert not any(e.stage == "generating" for e in log.progress[queued.request_id])  # never started
    finally:
        transport.close()
        worker.stop()


def test_ctrl_c_in_tag_generate_cancels_the_remote_job(rabbitmq_node, env, tmp_path: Path):
    worker = ThreadWorker(env, ["tone"], worker_id="w")
    started = len(ToneBackend.started)  # prompts whose generation began, in this process (other tests' too)
    tag = Path(sys.executable).with_name("tag")
    child_env = {**os.environ, **env, "TAG_PLUGINS": "rabbitmq", "TAG_PLUGIN_MODULES": "tag_testkit.tone"}
    process = subprocess.Popen(
        interruptible([str(tag), "generate", "a long hum", "-b", "tone", "-d", "1", "-O", f"delay={LONG}",
                       "--transport", "rabbitmq", "-o", str(tmp_path / "hum.wav")]),
        env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        end = time.monotonic() + 60
        while "a long hum" not in ToneBackend.started[started:] and time.monotonic() < end:  # until it runs
            time.sleep(0.1)
        assert "a long hum" in ToneBackend.started[started:], "the worker never started the job"
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=LONG / 2)
        except subprocess.TimeoutExpired:  # say what it was doing (communicate again keeps what it read)
            process.kill()
            pytest.fail(f"tag generate did not stop after SIGINT:\n{process.communicate()[0].decode()[-3000:]}")
        text = output.decode()
        assert process.returncode == 130, text
        assert "cancelled" in text and not (tmp_path / "hum.wav").exists()
        after = SoundRequest("after", 1.0, "tone")
        transport, client, log = make_client(env)
        client.submit(after)
        assert log.wait_responses([after.request_id], 60)[after.request_id].ok  # the worker is free again
        transport.close()
    finally:
        stop_process(process)
        worker.stop()

"""`tag worker --warmup`: the real command prepares each served backend before it takes its first job."""
from __future__ import annotations

import pytest

from tag_testkit.broker import cli_worker, stop_process, wait_workers

pytestmark = pytest.mark.broker


def test_worker_warms_up_each_backend_before_serving(rabbitmq_node, env):
    worker = cli_worker(env, "tone", "--warmup", "--max-batch", "4")
    try:
        wait_workers(rabbitmq_node, env, 1)
    finally:
        stop_process(worker)
    output = worker.stdout.read().decode()
    assert worker.returncode == 0, output
    # the test backend has nothing to prepare (Backend.warm_up's default); a model backend captures its graphs
    assert "warm-up: tone, 10 s clips at batch 1 and 4: 0.0 s" in output
    assert output.index("warm-up: tone") < output.index("worker ")  # before it announced itself as serving

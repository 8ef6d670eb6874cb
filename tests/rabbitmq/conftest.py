"""Fixtures for the RabbitMQ transport tests: a private broker (session) and per-test queue names."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

import tag_testkit.tone as tone
from tag_testkit.broker import broker_env, delete_queues, rabbitmq_node  # noqa: F401  (fixture)
from tagcore import plugins


@pytest.fixture(scope="module", autouse=True)
def tone_plugin() -> None:
    """The tone backends, registered before every module: with pytest-xdist a worker runs these modules after any
    other directory's tests, and registering at import time once did not survive to them."""
    if not plugins.get_plugin_manager().has_plugin("tag_testkit.tone"):
        plugins.register_plugin(tone, name="tag_testkit.tone")


@pytest.fixture
def env(rabbitmq_node) -> Iterator[dict[str, str]]:
    """Broker settings with queue names private to this test; its queues are deleted afterwards."""
    values = broker_env(rabbitmq_node)
    yield values
    if rabbitmq_node.accepting():
        delete_queues(rabbitmq_node, values, backends=("tone", "sine", "othertone"))

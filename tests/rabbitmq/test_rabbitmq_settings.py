"""Settings of the RabbitMQ transport (no broker needed)."""
from __future__ import annotations

import pytest

from tag_rabbitmq.settings import RabbitSettings, connection_parameters
from tagcore.config import load_config
from tagcore.errors import ConfigError


def config(**env: str):
    return load_config(environ={"TAG_CONFIG": "/nonexistent/tag.toml", **env})


def test_defaults_and_environment_overrides():
    assert RabbitSettings.from_config(config()).request_queue_for("tone") == "RequestQueue.tone"
    settings = RabbitSettings.from_config(config(TAG_RABBITMQ_REQUEST_QUEUE="Jobs", TAG_RABBITMQ_MAX_ATTEMPTS="7"))
    assert settings.request_queue_for("tone") == "Jobs.tone" and settings.max_attempts == 7


@pytest.mark.parametrize("env", [{"TAG_RABBITMQ_MAX_ATTEMPTS": "many"}, {"TAG_RABBITMQ_COLOUR": "red"},
                                 {"TAG_RABBITMQ_RESPONSE_QUEUE": "bad name!"}, {"TAG_RABBITMQ_MAX_ATTEMPTS": "0"},
                                 {"TAG_RABBITMQ_MAX_ATTEMPTS": "19"}])  # RabbitMQ 4 would give up first
def test_bad_settings_are_refused(env):
    with pytest.raises(ConfigError):
        RabbitSettings.from_config(config(**env))


def test_workers_only_answer_into_response_queues():
    settings = RabbitSettings()
    assert settings.accepts_reply_to("ResponseQueue.telegram")
    assert settings.accepts_reply_to("ResponseQueue.private.0123abcd")
    assert not settings.accepts_reply_to("RequestQueue.tone")
    assert not settings.accepts_reply_to(None)


def test_credentials_and_tls_come_from_the_url():
    params = connection_parameters(config(TAG_BROKER_URL="amqps://bob:s3cret@mq.example:5671/prod?heartbeat=30"))
    assert (params.host, params.port, params.virtual_host, params.heartbeat) == ("mq.example", 5671, "prod", 30)
    assert params.credentials.username == "bob" and params.ssl_options is not None
    with pytest.raises(ConfigError):
        connection_parameters(config(TAG_BROKER_URL="http://mq.example"))


def test_broker_down_is_one_line_without_tracebacks(tmp_path):
    """With the broker unreachable, `tag generate --transport rabbitmq` prints its one error line: no pika
    tracebacks, no retry chatter (those need -v)."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    tests = Path(__file__).resolve().parents[1]
    env = {**os.environ, "TAG_CONFIG": str(tmp_path / "none.toml"),
           "TAG_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{port}/%2F", "TAG_RABBITMQ_SUBMIT_TIMEOUT": "2",
           "TAG_PLUGIN_MODULES": "tag_testkit.tone", "PYTHONPATH": str(tests)}
    tag = Path(sys.executable).with_name("tag")
    done = subprocess.run([str(tag), "generate", "x", "-b", "tone", "-d", "1", "--transport", "rabbitmq", "-q"],
                          env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: the broker did not accept the request") and "Connection refused" in lines[0]

"""A private RabbitMQ node for development and tests: no root, no system service, no Docker.

It runs the Debian/Ubuntu `rabbitmq-server` package's own start script as the current user with every path,
port and the Erlang port mapper (epmd) private to one state folder, listening on 127.0.0.1 only. The same
code backs `tag broker start|stop|status`, `scripts/rabbitmq-dev` and the test suite's broker fixture.

State folder layout: node.json (name and ports), rabbitmq.conf, enabled_plugins, home/.erlang.cookie,
mnesia/ (queues and persistent messages: they survive a stop/start), log/, rabbitmq.pid.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import click

SERVER_SCRIPT_CANDIDATES = ("/usr/lib/rabbitmq/bin/rabbitmq-server",)
"""Debian's real start script (the /usr/sbin wrapper insists on switching to the rabbitmq user)."""
INSTALL_HINT = ("install the broker package first: sudo apt-get install --no-install-recommends rabbitmq-server "
                "(on a machine where no system broker should run, create /usr/sbin/policy-rc.d exiting 101 first)")


def server_script() -> Path | None:
    """The rabbitmq-server start script, or None when the package is not installed."""
    override = os.environ.get("TAG_RABBITMQ_SERVER_SCRIPT")
    for candidate in ((override,) if override else SERVER_SCRIPT_CANDIDATES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tag" / "rabbitmq"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class NodeSpec:
    """Name and ports of one private node; fixed once created so data and URLs stay valid across restarts."""

    name: str
    amqp_port: int
    dist_port: int
    epmd_port: int

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"


class BrokerNode:
    """One private broker node living in `state_dir`."""

    def __init__(self, state_dir: str | Path | None = None) -> None:
        self.state_dir = Path(state_dir) if state_dir else default_state_dir()
        self._launcher: subprocess.Popen[bytes] | None = None
        """The process this object started (None: not started here, or reaped)."""

    # -- files -------------------------------------------------------------------------------------------
    @property
    def spec_file(self) -> Path:
        return self.state_dir / "node.json"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "rabbitmq.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "log" / "console.log"

    def spec(self, amqp_port: int | None = None) -> NodeSpec:
        """The node's spec, created (with free ports) on first use."""
        if self.spec_file.is_file():
            spec = NodeSpec(**json.loads(self.spec_file.read_text()))
            if amqp_port and amqp_port != spec.amqp_port:
                spec.amqp_port = amqp_port
                self.spec_file.write_text(json.dumps(asdict(spec)))
            return spec
        self.state_dir.mkdir(parents=True, exist_ok=True)
        spec = NodeSpec(f"tag{secrets.token_hex(3)}@localhost", amqp_port or free_port(), free_port(), free_port())
        self.spec_file.write_text(json.dumps(asdict(spec)))
        return spec

    def _environment(self, spec: NodeSpec) -> dict[str, str]:
        home = self.state_dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(16))
            cookie.chmod(0o400)
        (self.state_dir / "log").mkdir(exist_ok=True)
        (self.state_dir / "mnesia").mkdir(exist_ok=True)
        conf = self.state_dir / "rabbitmq.conf"
        conf.write_text(f"listeners.tcp.default = 127.0.0.1:{spec.amqp_port}\n")
        plugins = self.state_dir / "enabled_plugins"
        plugins.write_text("[].\n")
        env = dict(os.environ)
        env.update(
            HOME=str(home),
            RABBITMQ_NODENAME=spec.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(spec.amqp_port),
            RABBITMQ_DIST_PORT=str(spec.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.state_dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.state_dir / "log"),
            RABBITMQ_CONFIG_FILE=str(conf),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(plugins),
            RABBITMQ_PID_FILE=str(self.pid_file),
            RABBITMQ_CONF_ENV_FILE="/dev/null",
            ERL_EPMD_PORT=str(spec.epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    # -- state -------------------------------------------------------------------------------------------
    def pid(self) -> int | None:
        """The pid of a running node, or None (a stale pid file is ignored)."""
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            return None
        return pid

    def accepting(self, timeout: float = 1.0) -> bool:
        """True when the AMQP port answers a protocol handshake (the node is ready for clients)."""
        if not self.spec_file.is_file():
            return False
        port = self.spec().amqp_port
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
                s.settimeout(timeout)
                s.sendall(b"AMQP\x00\x00\x09\x01")
                return s.recv(1) == b"\x01"  # a Connection.Start method frame
        except OSError:
            return False

    # -- control -----------------------------------------------------------------------------------------
    def start(self, *, amqp_port: int | None = None, wait: float = 60.0) -> NodeSpec:
        """Start the node in the background (idempotent) and wait until it accepts AMQP connections."""
        script = server_script()
        if script is None:
            raise click.ClickException(f"rabbitmq-server is not installed: {INSTALL_HINT}")
        spec = self.spec(amqp_port)
        if self.pid() is None:
            env = self._environment(spec)
            with open(self.log_file, "ab") as log:
                process = subprocess.Popen([str(script)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True)
            self._launcher = process
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if self.accepting():
                return spec
            launcher = self._launcher
            if launcher is not None and launcher.poll() is not None:
                raise click.ClickException(f"the broker exited with status {launcher.returncode}; "
                                           f"see {self.log_file}")
            time.sleep(0.2)
        raise click.ClickException(f"the broker did not accept connections within {wait:g} s; see {self.log_file}")

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the node and its private epmd; True if a node was running."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            end = time.monotonic() + timeout
            while time.monotonic() < end and self.pid() is not None:
                time.sleep(0.1)
            if self.pid() is not None:
                os.kill(pid, signal.SIGKILL)
        launcher = self._launcher
        if launcher is not None:
            try:
                launcher.wait(timeout=10)
            except subprocess.TimeoutExpired:
                launcher.kill()
            self._launcher = None
        if self.spec_file.is_file():
            self._kill_epmd(self.spec().epmd_port)
        self.pid_file.unlink(missing_ok=True)
        return pid is not None

    @staticmethod
    def _kill_epmd(port: int) -> None:
        epmd = shutil.which("epmd") or "/usr/bin/epmd"
        if Path(epmd).exists():
            subprocess.run([epmd, "-kill"], env={**os.environ, "ERL_EPMD_PORT": str(port)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10, check=False)

    def destroy(self) -> None:
        """Stop the node and delete its state folder (all queues and messages)."""
        self.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)


# -- `tag broker ...` ------------------------------------------------------------------------------------------
_dir_option = click.option("--dir", "state_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                           help="state folder of the node (default: $XDG_STATE_HOME/tag/rabbitmq)")


@click.group("broker")
def broker_cli() -> None:
    """Run a private local RabbitMQ node for development (needs the rabbitmq-server package, not root)."""


@broker_cli.command("start")
@_dir_option
@click.option("--port", type=int, default=None, help="AMQP port on 127.0.0.1 (default: a free one, then kept)")
def start_command(state_dir: Path | None, port: int | None) -> None:
    """Start the node in the background and print the broker URL to use (TAG_BROKER_URL)."""
    node = BrokerNode(state_dir)
    spec = node.start(amqp_port=port)
    click.echo(f"broker running (pid {node.pid()}), data in {node.state_dir}")
    click.echo(f"export TAG_BROKER_URL={spec.url}")


@broker_cli.command("stop")
@_dir_option
@click.option("--purge", is_flag=True, help="also delete the node's data (queues, messages)")
def stop_command(state_dir: Path | None, purge: bool) -> None:
    """Stop the node (queued messages are kept unless --purge)."""
    node = BrokerNode(state_dir)
    was_running = node.stop()
    if purge:
        node.destroy()
    click.echo("broker stopped" if was_running else "broker was not running")


@broker_cli.command("status")
@_dir_option
def status_command(state_dir: Path | None) -> None:
    """Say whether the node runs and accepts connections; exit status 1 when it does not."""
    node = BrokerNode(state_dir)
    pid = node.pid()
    if pid is None:
        click.echo(f"broker not running (state folder {node.state_dir})")
        raise SystemExit(1)
    spec = node.spec()
    state = "accepting connections" if node.accepting() else "starting"
    click.echo(f"broker running (pid {pid}), {state}; TAG_BROKER_URL={spec.url}")


if __name__ == "__main__":
    broker_cli()

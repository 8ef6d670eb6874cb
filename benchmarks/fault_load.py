"""Fault load test: what an operator sees when one thing breaks while an API and a bot are busy (issue 30).

    uv run python benchmarks/fault_load.py --fault none|kill-worker|broker-restart|malformed|restart-serve|kill-bot
        [--jobs 200 --clients 50 --prompts 125 --users 50 --workers 4] [--out benchmarks/results/fault_load_cpu.md]

It starts everything as separate processes, as an operator would: a private RabbitMQ node, N `tag worker
--transport rabbitmq -b tone` (the test kit's tone backend, whose pitch is a function of the prompt, slowed down
with its `delay` option), one `tag serve` (SQLite job store) and one `tag bot` against a fake Telegram Bot API in
this process. Then HTTP clients (each from its own 127.0.0.x address, so per-client limits apply as for separate
machines) post jobs with unique prompts, some with an Idempotency-Key they repeat later, follow them by polling or
by server-sent events and download the audio; chat users send prompts, press the duration button and collect the
clips the bot uploads. Most jobs are posted as their client starts (over `--ramp` seconds); `--late-share` of them,
and every repeat of a key, are posted at random times over the run's expected length, so that some meet the fault.

When `--fault-at` of the work is done, one fault is injected: kill-worker = kill -9 one worker (not restarted);
broker-restart = stop the node and start it again on its data; malformed = publish `--malformed` bad messages to
the workers' request queues (every priority) and the API's and bot's reply queues; restart-serve = SIGTERM `tag
serve`, wait for it to exit, start it again on the same port and store; kill-bot = kill -9 `tag bot` while a clip
upload is on the wire (each takes `--upload-latency` s on the fake, which drops an upload whose sender died, as
Telegram does) and start it again on the same store.

Every clip is checked against the prompt it claims to be for: the tone's measured frequency must be the prompt's
(`tone_frequency`; prompts are chosen with distinct frequencies), and a chat clip must reach the chat that asked.
Per run it reports HTTP jobs answered once / lost / duplicated / mixed / failed, polls answered 404, Idempotency-Key
repeats that made a second job, chat prompts delivered once / lost / duplicated / mixed, p50/p95 latencies, and
for every anomaly the evidence found in the process logs (kept in the run folder). Exit status 1 when anything was
lost, duplicated or mixed.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pika

from tag_bench.side_by_side import percentile
from tag_rabbitmq.devbroker import BrokerNode, free_port
from tag_testkit.broker import queue_depth
from tag_testkit.fake_telegram import Call, FakeTelegram
from tag_testkit.tone import tone_frequency
from tagcore import audio as audio_io
from tagcore.audio_types import Audio
from tagcore.messages import SoundRequest, encode

FAULTS = ("none", "kill-worker", "broker-restart", "malformed", "restart-serve", "kill-bot")
UPLOADS = ("sendVoice", "sendAudio", "sendDocument")
TERMINAL = ("done", "failed", "cancelled", "expired")
FREQUENCY_TOLERANCE = 0.25
"""Hz: a 1 s tone is measured to about 0.001 Hz (WAV and Opus alike); prompts are 1 Hz apart at least."""
CHAT_DELAY = 1.0
"""Seconds of generation per chat clip (the bot applies one `delay` to every request through [telegram] options)."""


# --- plan and bookkeeping -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """The run's sizes and knobs, from the command line."""

    fault: str
    jobs: int
    clients: int
    prompts: int
    users: int
    workers: int
    repeats: int
    fault_at: float
    ramp: float
    timeout: float
    settle: float
    min_delay: float
    max_delay: float
    seed: int
    sse_share: float
    malformed: int
    late_share: float
    upload_latency: float


@dataclass
class HttpJob:
    """One logical API request and everything its client saw."""

    index: int
    client: int
    prompt: str
    delay: float
    key: str | None
    repeat: bool
    use_sse: bool
    post_after: float = 0.0
    """Seconds after the load's start when it is posted (0: at its client's start). Late jobs are spread over
    the expected length of the run by the clock, not by progress, which stalls while the API is down."""
    repeat_after: float = 0.0
    """Seconds after the load's start when the keyed POST is sent again (spread the same way, so repeats also
    come during and after the fault: after a restart the key must still find the job)."""
    ids: list[str] = field(default_factory=list)
    """Distinct job ids the server answered for this request (more than one: a duplicate job)."""
    created: int = 0
    """POSTs answered 202 (a new job): more than one is a second job."""
    replayed: int = 0
    repeat_made_second_job: bool = False
    post_errors: list[str] = field(default_factory=list)
    not_found: int = 0
    """Polls (or event streams) answered 404 for a job the server had accepted."""
    unreachable: int = 0
    """Polls or event streams that failed without an answer, or with a 5xx (the API was down or stopping)."""
    state: str = ""
    error: str = ""
    latency: float | None = None
    mixed: str = ""
    submitted_at: float = 0.0


@dataclass
class ChatPrompt:
    """One prompt a chat user sends, and what came back."""

    user: int
    prompt: str
    sent: int = 0
    """How many times the user typed it: once, again after a "still being made" reply (`busy`), and again when
    the bot lost the draft or the button press (a resend)."""
    busy: int = 0
    resent_after_choice: bool = False
    """A resend after the bot showed the chosen duration but never said "queued" (it may have been submitted)."""
    submitted: bool = False
    pressed_at: float | None = None
    latency: float | None = None


@dataclass
class Progress:
    """Finished work items, to inject the fault mid-run."""

    total: int
    done: int = 0

    def fraction(self) -> float:
        return self.done / max(1, self.total)


def expected_run(plan: Plan) -> float:
    """Seconds the workers need for all the work at the least (late jobs and repeats are spread over it)."""
    work = plan.jobs * (plan.min_delay + plan.max_delay) / 2 + plan.prompts * CHAT_DELAY
    return plan.ramp + work / max(1, plan.workers)


def percentile_or_none(values: list[float], q: float) -> float | None:
    return percentile(values, q) if values else None


def distinct_prompts(count: int, label: str, taken: set[int], rng: random.Random) -> list[str]:
    """Unique prompts whose tone frequencies differ from each other and from `taken` (which grows), so the
    pitch of a clip tells which prompt it was made for."""
    if count + len(taken) > 800:
        raise SystemExit("at most 800 prompts in all: the tone backend has 800 distinct pitches")
    words = ("rain", "wind", "bells", "engine", "birds", "waves", "crowd", "clock", "train", "fire")
    prompts: list[str] = []
    while len(prompts) < count:
        prompt = f"{label} {len(prompts)} {rng.choice(words)} {rng.randrange(10 ** 6)}"
        pitch = int(tone_frequency(prompt))
        if pitch not in taken:
            taken.add(pitch)
            prompts.append(prompt)
    return prompts


def dominant_frequency(clip: Audio) -> float:
    """Frequency of the strongest partial (Hann window, 8x zero padding, parabolic interpolation)."""
    mono = clip.samples.astype(np.float64).mean(axis=0)
    size = 1 << (len(mono) * 8 - 1).bit_length()
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono)), size))
    peak = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[peak - 1:peak + 2] + 1e-12)
    offset = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c else 0.0
    return float((peak + offset) * clip.sample_rate / size)


def audio_mismatch(data: bytes, prompt: str) -> str:
    """Why the audio is not the clip of `prompt` ("" when it is)."""
    try:
        measured = dominant_frequency(audio_io.decode(data))
    except Exception as exc:  # an unreadable file is as wrong as the wrong tone
        return f"unreadable audio ({exc})"
    wanted = tone_frequency(prompt)
    if abs(measured - wanted) > FREQUENCY_TOLERANCE:
        return f"tone at {measured:.2f} Hz, the prompt's is {wanted:.0f} Hz"
    return ""


# --- the processes ---------------------------------------------------------------------------------------------
class SlowUploads(FakeTelegram):
    """The fake Bot API with uploads that take `latency` seconds on the wire, as a voice note to Telegram does.

    The wait comes before the fake reads the request, so an upload whose bot is killed meanwhile never arrives
    (Telegram acts only on a complete request): the bot must send it again after its restart. `uploading` counts
    the uploads on the wire now, so a kill can be aimed at one."""

    def __init__(self, latency: float) -> None:
        super().__init__()
        self.latency = latency
        self.uploading = 0

    def _gate(self, method: str) -> None:
        if method in UPLOADS and self.latency > 0:
            with self._lock:
                self.uploading += 1
            try:
                time.sleep(self.latency)
            finally:
                with self._lock:
                    self.uploading -= 1
        super()._gate(method)


class Cluster:
    """The broker, workers, API and bot of one run, each a child process logging to the run folder.

    Only processes started here are ever signalled, by their pid; the broker node is stopped through its own
    pid file (BrokerNode), which this run created."""

    def __init__(self, plan: Plan, root: Path) -> None:
        self.plan = plan
        self.root = root
        self.node = BrokerNode(root / "rabbitmq")
        self.fake = SlowUploads(plan.upload_latency)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tag = str(Path(sys.executable).with_name("tag"))
        self.workers: list[subprocess.Popen[bytes]] = []
        self.serve: subprocess.Popen[bytes] | None = None
        self.bot: subprocess.Popen[bytes] | None = None
        self.starts: Counter[str] = Counter()
        self.env: dict[str, str] = {}
        self.events: list[str] = []
        """What the run did to the processes, with times (for the report)."""
        self.t0 = time.monotonic()

    def note(self, text: str) -> None:
        self.events.append(f"{time.monotonic() - self.t0:7.1f} s  {text}")
        print(self.events[-1], flush=True)

    def base_env(self) -> dict[str, str]:
        """Environment of every child: this broker, queue names of this run, nothing from the user's config."""
        prefix = f"fl{uuid.uuid4().hex[:6]}"
        return {**os.environ, "TAG_CONFIG": "/nonexistent/tag-fault-load.toml", "TAG_BROKER_URL": self.node.spec().url,
                "TAG_RABBITMQ_REQUEST_QUEUE": f"{prefix}Request", "TAG_RABBITMQ_RESPONSE_QUEUE": f"{prefix}Response",
                "TAG_RABBITMQ_DEAD_LETTER_QUEUE": f"{prefix}Dead", "TAG_RABBITMQ_CATALOG_QUEUE": f"{prefix}Catalog",
                "XDG_DATA_HOME": str(self.root / "data"), "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost"}

    def _spawn(self, role: str, args: list[str], extra: dict[str, str]) -> subprocess.Popen[bytes]:
        self.starts[role] += 1
        log = self.root / f"{role}-{self.starts[role]}.log"
        with log.open("ab") as out:
            process = subprocess.Popen([self.tag, "-v", *args], env={**self.env, **extra}, stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.note(f"started {role} (pid {process.pid}, log {log.name})")
        return process

    def start(self) -> None:
        self.node.start()
        self.env = self.base_env()
        self.fake.start()
        for _ in range(self.plan.workers):
            self.workers.append(self._spawn("worker", ["worker", "--transport", "rabbitmq", "-b", "tone"],
                                            {"TAG_PLUGINS": "rabbitmq", "TAG_PLUGIN_MODULES": "tag_testkit.tone"}))
        self.wait_consumers(f"{self.env['TAG_RABBITMQ_REQUEST_QUEUE']}.tone.workers", self.plan.workers)
        self.start_serve()
        self.start_bot()

    def start_serve(self) -> None:
        self.serve = self._spawn("serve", ["serve", "--transport", "rabbitmq", "--port", str(self.port)], {
            "TAG_PLUGINS": "rabbitmq,http", "TAG_PLUGIN_MODULES": "tag_testkit.tone",
            "TAG_HTTP_STORE": f"sqlite:///{self.root / 'jobs.sqlite'}"})
        wait_until(self.serving, "tag serve answering with the tone backend available", self.serve)

    def serving(self) -> bool:
        try:
            backends = httpx.get(f"{self.url}/v1/backends", timeout=2, trust_env=False).json()["backends"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return False
        return any(entry["name"] == "tone" and entry["available"] for entry in backends)

    def start_bot(self) -> None:
        polls = self.fake.polls
        self.bot = self._spawn("bot", ["bot", "--transport", "rabbitmq"], {
            "TAG_PLUGINS": "rabbitmq,telegram", "TAG_TELEGRAM_TOKEN": self.fake.token,
            "TAG_TELEGRAM_API_URL": self.fake.base_url, "TAG_TELEGRAM_POLL_TIMEOUT": "2",
            "TAG_TELEGRAM_STORE": str(self.root / "bot.sqlite3"), "TAG_TELEGRAM_BACKEND": "tone",
            "TAG_TELEGRAM_BACKENDS": "tone", "TAG_TELEGRAM_DURATIONS": "1,2",
            "TAG_TELEGRAM_OPTIONS": json.dumps({"tone": {"delay": CHAT_DELAY}})})
        wait_until(lambda: self.fake.polls > polls, "tag bot polling", self.bot)

    def wait_consumers(self, queue: str, count: int, timeout: float = 120.0) -> None:
        def enough() -> bool:
            try:
                return queue_depth(self.node, queue)[1] >= count
            except Exception:
                return False
        wait_until(enough, f"{count} consumers on {queue}", None, timeout)

    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in (*self.workers, self.serve, self.bot) if p is not None]

    def stop(self, keep_broker: bool = False) -> None:
        """SIGTERM every child started here (SIGKILL after 30 s), then the broker node and the fake server."""
        for process in self.processes():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if keep_broker:
            self.node.stop()
        else:
            self.node.destroy()
        self.fake.stop()


def wait_until(predicate: Callable[[], bool], what: str, process: subprocess.Popen[bytes] | None,
               timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with status {process.returncode}")
        if time.monotonic() > end:
            raise RuntimeError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.2)


# --- faults ----------------------------------------------------------------------------------------------------
def malformed_bodies(count: int, rng: random.Random) -> list[bytes]:
    """Bodies no peer should send: garbage, wrong magic, truncated or lying headers, poison JSON, bad fields."""
    valid = encode(SoundRequest("a valid request cut short", 1.0, "tone", seed=1))
    frame = b"TAGM" + (0).to_bytes(4, "big")

    def framed(header: bytes) -> bytes:
        return b"TAGM" + len(header).to_bytes(4, "big") + header

    kinds: list[Callable[[], bytes]] = [
        lambda: rng.randbytes(rng.randrange(0, 2048)),
        lambda: b"",
        lambda: b"XXXX" + valid[4:],
        lambda: valid[:rng.randrange(1, len(valid))],
        lambda: frame,
        lambda: b"TAGM" + (10 ** 9).to_bytes(4, "big") + b"{}",
        lambda: framed(b"[" * 50_000 + b"]" * 50_000),
        lambda: framed(b'{"v":2,"kind":"request","prompt":"p","duration":Infinity,"backend":"tone"}'),
        lambda: framed(b'{"v":2,"kind":"request","prompt":"p","duration":-1,"backend":"tone"}'),
        lambda: framed(b'{"v":2,"kind":"response","request_id":"../../etc","ok":true}'),
        lambda: framed(b'{"v":99,"kind":"request"}'),
        lambda: framed(b'{"v":2,"kind":"request","prompt":"p","duration":2,"backend":"tone","audio":'
                       b'{"sample_rate":1e999,"channels":1,"frames":0,"dtype":"float32le"}}'),
        lambda: framed(json.dumps({"v": 2, "kind": "progress", "request_id": 7}).encode()),
        lambda: framed("\ud800".encode("utf-8", "surrogatepass")),
    ]
    return [rng.choice(kinds)() for _ in range(count)]


def publish_malformed(cluster: Cluster, count: int, rng: random.Random) -> dict[str, int]:
    """Publish `count` malformed messages, spread over the queues the workers (every priority), the API and the
    bot consume; how many went to each."""
    env = cluster.env
    request = env["TAG_RABBITMQ_REQUEST_QUEUE"]
    response = env["TAG_RABBITMQ_RESPONSE_QUEUE"]
    queues = [f"{request}.tone", f"{request}.tone.p1", f"{request}.tone.p2", f"{response}.http",
              f"{response}.telegram"]
    sent: Counter[str] = Counter()
    connection = pika.BlockingConnection(pika.URLParameters(cluster.node.spec().url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for body in malformed_bodies(count, rng):
            queue = rng.choice(queues)
            channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2, type=rng.choice(
                ["request", "response", "progress", None]), reply_to=f"{response}.http"))
            sent[queue] += 1
    finally:
        connection.close()
    return dict(sent)


def inject(cluster: Cluster, fault: str, rng: random.Random, malformed: int) -> dict[str, Any]:
    """Apply one fault (blocking; run it off the event loop) and say what was done."""
    if fault == "kill-worker":
        victim = cluster.workers[0]
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        cluster.note(f"kill -9 worker pid {victim.pid}")
        return {"killed_worker": victim.pid}
    if fault == "broker-restart":
        cluster.note("stopping the broker")
        cluster.node.stop()
        cluster.node.start()
        cluster.note("broker accepting connections again")
        return {}
    if fault == "malformed":
        sent = publish_malformed(cluster, malformed, rng)
        cluster.note(f"published {malformed} malformed messages: {sent}")
        return {"malformed": sent}
    if fault == "restart-serve":
        assert cluster.serve is not None
        began = time.monotonic()
        cluster.serve.send_signal(signal.SIGTERM)
        code = cluster.serve.wait(60)
        cluster.note(f"tag serve stopped by SIGTERM: exit {code} after {time.monotonic() - began:.1f} s")
        cluster.start_serve()
        cluster.note(f"tag serve answering again, {time.monotonic() - began:.1f} s after the SIGTERM")
        return {"serve_exit": code, "serve_down_s": round(time.monotonic() - began, 1)}
    if fault == "kill-bot":
        assert cluster.bot is not None
        end = time.monotonic() + 20
        while cluster.fake.uploading == 0 and time.monotonic() < end:  # aim at an upload on the wire
            time.sleep(0.01)
        uploading = cluster.fake.uploading
        os.kill(cluster.bot.pid, signal.SIGKILL)
        cluster.bot.wait()
        cluster.note(f"kill -9 tag bot pid {cluster.bot.pid} ({uploading} uploads on the wire)")
        cluster.start_bot()
        cluster.note("tag bot polling again")
        return {}
    return {}


async def fault_when_due(cluster: Cluster, plan: Plan, progress: Progress, rng: random.Random,
                         outcome: dict[str, Any]) -> None:
    """Wait until `fault_at` of the work is finished, then inject the fault (never for `none`)."""
    if plan.fault == "none":
        return
    while progress.fraction() < plan.fault_at:
        await asyncio.sleep(0.1)
    cluster.note(f"injecting {plan.fault} at {progress.done}/{progress.total} items finished")
    outcome.update(await asyncio.to_thread(inject, cluster, plan.fault, rng, plan.malformed))
    outcome["workers_alive_after"] = sum(1 for worker in cluster.workers if worker.poll() is None)


# --- HTTP clients ----------------------------------------------------------------------------------------------
class HttpDriver:
    """The API's clients: each from its own loopback address, its jobs posted over a ramp and followed."""

    def __init__(self, plan: Plan, url: str, prompts: list[str], rng: random.Random, progress: Progress) -> None:
        self.plan = plan
        self.url = url
        self.progress = progress
        self.deadline = 0.0
        keyed = set(rng.sample(range(plan.jobs), min(plan.repeats, plan.jobs)))
        late = set(rng.sample(range(plan.jobs), round(plan.late_share * plan.jobs)))
        span = expected_run(plan)
        self.jobs = [HttpJob(index=i, client=i % plan.clients, prompt=prompt,
                             delay=round(rng.uniform(plan.min_delay, plan.max_delay), 2),
                             key=f"fl-{uuid.uuid4().hex}" if i in keyed else None, repeat=i in keyed,
                             use_sse=rng.random() < plan.sse_share,
                             post_after=rng.uniform(0.05, 0.9) * span if i in late else 0.0,
                             repeat_after=rng.uniform(0.05, 1.0) * span)
                     for i, prompt in enumerate(prompts)]
        self.rng = rng
        self.began = 0.0

    async def until(self, after: float) -> None:
        await asyncio.sleep(max(0.0, self.began + after - time.monotonic()))

    def body(self, job: HttpJob) -> dict[str, Any]:
        return {"prompt": job.prompt, "backend": "tone", "duration": 1.0, "seed": job.index,
                "options": {"delay": job.delay}}

    async def run(self, deadline: float) -> None:
        self.deadline = deadline
        self.began = time.monotonic()
        by_client: dict[int, list[HttpJob]] = defaultdict(list)
        for job in self.jobs:
            by_client[job.client].append(job)
        await asyncio.gather(*(self.client(number, jobs) for number, jobs in by_client.items()))

    async def client(self, number: int, jobs: list[HttpJob]) -> None:
        """One client (address 127.0.0.<number + 2>): starts on the ramp, posts its jobs a moment apart."""
        transport = httpx.AsyncHTTPTransport(local_address=f"127.0.0.{2 + number % 250}")
        async with httpx.AsyncClient(base_url=self.url, transport=transport, timeout=30, trust_env=False) as http:
            await asyncio.sleep(self.plan.ramp * number / max(1, self.plan.clients))
            tasks = []
            for job in jobs:
                tasks.append(asyncio.create_task(self.one(http, job)))
                await asyncio.sleep(self.rng.uniform(0.1, 1.0))
            await asyncio.gather(*tasks)

    async def one(self, http: httpx.AsyncClient, job: HttpJob) -> None:
        await self.until(job.post_after)
        job.submitted_at = time.monotonic()
        job_id = await self.post(http, job)
        if job_id is None:
            job.state = job.state or "not submitted"
            job.error = job.error or f"POST failed: {job.post_errors[-1] if job.post_errors else 'deadline'}"
            self.progress.done += 1
            return
        repeat = asyncio.create_task(self.repeat(http, job)) if job.repeat else None
        await self.follow(http, job, job_id)
        self.progress.done += 1  # before the repeat: the fault is due at a share of the work, repeats or not
        if repeat is not None:
            await repeat

    async def post(self, http: httpx.AsyncClient, job: HttpJob) -> str | None:
        """POST until the server answers with a job. Without a key only a refused connection is retried: any
        other failure may have created a job the client can never learn about (that counts as lost)."""
        headers = {"Idempotency-Key": job.key} if job.key else {}
        while time.monotonic() < self.deadline:
            try:
                reply = await http.post("/v1/jobs", json=self.body(job), headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                job.post_errors.append(type(exc).__name__)
                await asyncio.sleep(0.5)
                continue
            except httpx.HTTPError as exc:
                job.post_errors.append(f"{type(exc).__name__}: {exc}")
                if job.key:
                    await asyncio.sleep(0.5)
                    continue
                return None
            if reply.status_code in (429, 503):
                job.post_errors.append(f"{reply.status_code} {reply.json().get('error', {}).get('code')}")
                await asyncio.sleep(min(5.0, float(reply.headers.get("Retry-After", "1"))))
                continue
            if reply.status_code not in (200, 202):
                job.post_errors.append(f"POST {reply.status_code}: {reply.text[:200]}")
                return None
            job_id = str(reply.json()["id"])
            job.created += reply.status_code == 202
            job.replayed += reply.status_code == 200
            if job_id not in job.ids:
                job.ids.append(job_id)
            return job_id
        return None

    async def repeat(self, http: httpx.AsyncClient, job: HttpJob) -> None:
        """Send the same keyed POST again later in the run (a client retrying): it must return the same job."""
        await asyncio.sleep(0.5)
        await self.until(job.repeat_after)
        before = (len(job.ids), job.created)
        job_id = await self.post(http, job)
        if job_id is not None and (len(job.ids), job.created) != before:
            job.repeat_made_second_job = True

    async def follow(self, http: httpx.AsyncClient, job: HttpJob, job_id: str) -> None:
        """Wait for the job's final state (polling or its event stream), then fetch and check its audio."""
        remaining = self.deadline - time.monotonic()
        try:
            async with asyncio.timeout(max(0.0, remaining)):
                status = await (self.stream(http, job, job_id) if job.use_sse else self.poll(http, job, job_id))
        except TimeoutError:
            job.state, job.error = job.state or "unfinished", "no final state before the deadline"
            return
        job.state = str(status["state"])
        if status.get("prompt") != job.prompt:
            job.mixed = f"the job's status names prompt {status.get('prompt')!r}"
        if job.state != "done":
            job.error = json.dumps(status.get("error"))
            return
        job.latency = time.monotonic() - job.submitted_at
        data = await self.download(http, job, job_id)
        if data is not None:
            job.mixed = job.mixed or audio_mismatch(data, job.prompt)

    async def poll(self, http: httpx.AsyncClient, job: HttpJob, job_id: str) -> dict[str, Any]:
        """GET the status about once a second; a 404 is counted and polled again (the job may come back)."""
        while True:
            try:
                reply = await http.get(f"/v1/jobs/{job_id}")
            except httpx.HTTPError:
                job.unreachable += 1
                await asyncio.sleep(0.5)
                continue
            job.unreachable += reply.status_code >= 500
            if reply.status_code == 404:
                job.not_found += 1
            elif reply.status_code == 200 and reply.json()["state"] in TERMINAL:
                return dict(reply.json())
            await asyncio.sleep(self.rng.uniform(0.8, 1.2))

    async def stream(self, http: httpx.AsyncClient, job: HttpJob, job_id: str) -> dict[str, Any]:
        """Read the job's server-sent events until a final state, reconnecting whenever the stream breaks."""
        while True:
            try:
                async with http.stream("GET", f"/v1/jobs/{job_id}/events") as reply:
                    job.unreachable += reply.status_code >= 500
                    if reply.status_code == 404:
                        job.not_found += 1
                    elif reply.status_code == 200:
                        async for line in reply.aiter_lines():
                            if line.startswith("data: "):
                                status = json.loads(line[6:])
                                if status["state"] in TERMINAL:
                                    return dict(status)
            except (httpx.HTTPError, json.JSONDecodeError):
                job.unreachable += 1
            await asyncio.sleep(0.5)

    async def download(self, http: httpx.AsyncClient, job: HttpJob, job_id: str) -> bytes | None:
        """The job's WAV (retried across a restarting server); None, with the reason kept, when there is none."""
        while time.monotonic() < self.deadline:
            try:
                reply = await http.get(f"/v1/jobs/{job_id}/audio")
            except httpx.HTTPError:
                await asyncio.sleep(0.5)
                continue
            if reply.status_code == 200:
                return reply.content
            job.state, job.error = "done, no audio", f"audio {reply.status_code}: {reply.text[:200]}"
            return None
        job.state, job.error = "done, no audio", "the audio could not be downloaded before the deadline"
        return None


# --- chat users --------------------------------------------------------------------------------------------------
class ChatDriver:
    """The bot's users: each sends its prompts one after the other, as a person waits for one clip before the
    next, and resends a prompt only when the bot plainly lost it (no keyboard, or no "queued" after the press)."""

    FIRST_USER = 5000

    def __init__(self, plan: Plan, fake: FakeTelegram, prompts: list[str], progress: Progress,
                 clip_patience: float) -> None:
        self.plan = plan
        self.fake = fake
        self.progress = progress
        self.clip_patience = clip_patience
        self.items = [ChatPrompt(user=self.FIRST_USER + i % plan.users, prompt=p) for i, p in enumerate(prompts)]
        self.inbox: dict[int, list[Call]] = defaultdict(list)
        """Every successful call the bot made to a chat, by chat id, in order."""
        self._indexed = 0
        self.deadline = 0.0

    def index(self) -> None:
        calls = self.fake.calls
        new, self._indexed = calls[self._indexed:len(calls)], len(calls)
        for call in new:
            if call.chat_id is not None and call.status == 200:
                self.inbox[call.chat_id].append(call)

    async def watch(self) -> None:
        while True:
            self.index()
            await asyncio.sleep(0.05)

    async def wait_for(self, chat: int, start: int, match: Callable[[Call], bool], timeout: float) -> Call | None:
        """The first call to `chat` from position `start` on that `match`es, or None after `timeout` s."""
        end = min(self.deadline, time.monotonic() + timeout)
        while True:
            for call in self.inbox[chat][start:]:
                if match(call):
                    return call
            if time.monotonic() > end:
                return None
            await asyncio.sleep(0.05)

    async def run(self, deadline: float) -> None:
        self.deadline = deadline
        by_user: dict[int, list[ChatPrompt]] = defaultdict(list)
        for item in self.items:
            by_user[item.user].append(item)
        await asyncio.gather(*(self.user(items) for items in by_user.values()))

    async def user(self, items: list[ChatPrompt]) -> None:
        offset = (items[0].user - self.FIRST_USER) / max(1, self.plan.users)
        await asyncio.sleep(self.plan.ramp * offset)
        for item in items:
            await self.ask(item)
            if item.submitted:
                prompt = item.prompt
                await self.wait_for(item.user, 0, lambda c: is_clip_for(c, prompt), self.clip_patience)
            self.progress.done += 1

    async def ask(self, item: ChatPrompt) -> None:
        """Type the prompt and press "1 s" until the bot says the request is queued (5 tries)."""
        user = item.user
        tries = 0
        while tries < 5 and time.monotonic() < self.deadline:
            mark = len(self.inbox[user])
            item.sent += 1
            self.fake.push_text(user, item.prompt)
            answer = await self.wait_for(user, mark, lambda c: is_question(c, item.prompt) or is_busy(c), 30)
            if answer is not None and is_busy(answer):  # an earlier clip is still on its way: wait for it
                item.busy += 1
                await asyncio.sleep(5)
                continue
            tries += 1
            if answer is None:
                continue
            item.pressed_at = time.monotonic()
            mark = len(self.inbox[user])
            self.fake.push_callback(user, answer, duration_button(answer))
            message_id = str(answer.result["message_id"])
            chosen = await self.wait_for(user, mark, lambda c: c.method == "editMessageText" and c.params.get(
                "message_id") == message_id and c.params.get("text", "").startswith("🎚"), 20)
            if chosen is None:
                continue  # the press was lost with a bot, or its draft was (a restarted bot knows no drafts)
            queued = await self.wait_for(user, mark, lambda c: c.method in UPLOADS or (
                c.method == "sendMessage" and "reply_markup" not in c.params), 20)
            if queued is None:
                item.resent_after_choice = True
                continue
            item.submitted = True
            return


def is_question(call: Call, prompt: str) -> bool:
    return (call.method == "sendMessage" and prompt in call.params.get("text", "")
            and "dur:" in call.params.get("reply_markup", ""))


def is_busy(call: Call) -> bool:
    return call.method == "sendMessage" and call.params.get("text", "").startswith("⏳ Your previous sound")


def duration_button(question: Call) -> str:
    """Callback data of the "1 s" button (the shortest preset)."""
    rows = json.loads(question.params["reply_markup"])["inline_keyboard"]
    return str(rows[0][0]["callback_data"])


def clip_prompt(call: Call) -> str:
    """The prompt a clip's caption names (its first line, after the speaker sign)."""
    return call.params.get("caption", "").split("\n", 1)[0].removeprefix("🔊 ")


def is_clip_for(call: Call, prompt: str) -> bool:
    return call.method in UPLOADS and clip_prompt(call) == prompt


def clip_bytes(call: Call) -> bytes:
    return next(iter(call.files.values()))[1] if call.files else b""


# --- tally and evidence ------------------------------------------------------------------------------------------
def http_tally(jobs: list[HttpJob]) -> dict[str, Any]:
    """Counts over the API's jobs: once = one job, done, with the right audio."""
    once = [j for j in jobs if j.state == "done" and len(j.ids) == 1 and j.created <= 1 and not j.mixed]
    repeats = [j for j in jobs if j.repeat]
    latencies = [j.latency for j in jobs if j.latency is not None]
    return {
        "once": len(once),
        "lost": sum(1 for j in jobs if j.state not in ("done", "failed")),
        "failed": sum(1 for j in jobs if j.state == "failed"),
        "duplicated": sum(1 for j in jobs if len(j.ids) > 1 or j.created > 1),
        "mixed": sum(1 for j in jobs if j.mixed),
        "polls_404": sum(j.not_found for j in jobs),
        "jobs_with_404": sum(1 for j in jobs if j.not_found),
        "repeats": len(repeats),
        "repeats_second_job": sum(1 for j in repeats if j.repeat_made_second_job),
        "post_errors": sum(len(j.post_errors) for j in jobs),
        "follow_errors": sum(j.unreachable for j in jobs),
        "p50": percentile_or_none(latencies, 0.5),
        "p95": percentile_or_none(latencies, 0.95),
    }


def chat_tally(items: list[ChatPrompt], inbox: dict[int, list[Call]]) -> tuple[dict[str, Any], list[str]]:
    """Counts over the chat prompts from every clip the bot uploaded, and the clips that were mixed up."""
    owner = {item.prompt: item.user for item in items}
    clips: Counter[str] = Counter()
    first: dict[str, float] = {}
    mixed: list[str] = []
    for chat, calls in inbox.items():
        for call in calls:
            if call.method not in UPLOADS:
                continue
            prompt = clip_prompt(call)
            wrong = ("a prompt nobody sent" if prompt not in owner else
                     f"chat {chat}, but user {owner[prompt]} asked" if owner[prompt] != chat else
                     audio_mismatch(clip_bytes(call), prompt))
            if wrong:
                mixed.append(f"clip captioned {prompt!r} in chat {chat}: {wrong}")
                continue
            clips[prompt] += 1
            first.setdefault(prompt, call.at)
    latencies = [first[i.prompt] - i.pressed_at for i in items
                 if i.prompt in first and i.pressed_at is not None and first[i.prompt] >= i.pressed_at]
    tally = {
        "once": sum(1 for i in items if clips[i.prompt] == 1),
        "lost": sum(1 for i in items if clips[i.prompt] == 0),
        "lost_never_queued": sum(1 for i in items if clips[i.prompt] == 0 and not i.submitted),
        "duplicated": sum(1 for i in items if clips[i.prompt] > 1),
        "duplicated_after_resend": sum(1 for i in items if clips[i.prompt] > 1 and i.resent_after_choice),
        "mixed": len(mixed),
        "resent": sum(max(0, i.sent - 1 - i.busy) for i in items),
        "busy_replies": sum(i.busy for i in items),
        "p50": percentile_or_none(latencies, 0.5),
        "p95": percentile_or_none(latencies, 0.95),
    }
    return tally, mixed


def log_lines(root: Path, needle: str, limit: int = 8) -> list[str]:
    """Lines of the run's process logs that mention `needle` (file name first)."""
    found: list[str] = []
    for log in sorted(root.glob("*.log")):
        with log.open(errors="replace") as handle:
            for line in handle:
                if needle in line and "GET /v1/jobs" not in line:
                    found.append(f"{log.name}: {line.rstrip()[:300]}")
                    if len(found) >= limit:
                        return found
    return found


def log_counts(root: Path) -> dict[str, int]:
    """What the processes' logs say about the fault's effect: work generated twice (a request redelivered to a
    worker), answers the bot sent again after a restart or dropped as duplicates, event streams uvicorn cut."""
    generated: Counter[str] = Counter()
    for log in root.glob("worker-*.log"):
        generated.update(re.findall(r"tagcore\.jobs: job ([0-9a-f]+) ", log.read_text(errors="replace")))
    bot = "".join(log.read_text(errors="replace") for log in root.glob("bot-*.log"))
    serve = "".join(log.read_text(errors="replace") for log in root.glob("serve-*.log"))
    return {"jobs_generated": sum(generated.values()),
            "jobs_generated_twice": sum(1 for count in generated.values() if count > 1),
            "bot_sent_again": bot.count("again: the bot stopped while it was being sent"),
            "bot_dropped_duplicates": bot.count("dropped a duplicate answer"),
            "serve_tasks_cancelled": sum(int(n) for n in re.findall(r"Cancel (\d+) running task", serve)),
            "dead_lettered_logged": sum(log.read_text(errors="replace").count("dead-lettered")
                                        for log in root.glob("*.log"))}


def bot_answers(store: Path, chat: int) -> list[tuple[Any, ...]]:
    """The bot store's rows for a chat: (request id, state, attempts, message id, reason)."""
    if not store.exists():
        return []
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        return db.execute("SELECT request_id, state, attempts, message_id, reason FROM answers WHERE chat_id = ? "
                          "ORDER BY received_at", (chat,)).fetchall()


def evidence(root: Path, jobs: list[HttpJob], items: list[ChatPrompt], clips: dict[str, int]) -> list[str]:
    """For every job or prompt that was not answered exactly once: what the logs and the bot's store say."""
    notes: list[str] = []
    for job in jobs:
        if job.state == "done" and len(job.ids) == 1 and job.created <= 1 and not job.mixed:
            continue
        notes.append(f"HTTP job {job.index} {job.prompt!r} ids={job.ids} state={job.state!r} error={job.error!r} "
                     f"created={job.created} replayed={job.replayed} 404s={job.not_found} "
                     f"post_errors={job.post_errors[-3:]} mixed={job.mixed!r}")
        for job_id in job.ids:
            notes += [f"    {line}" for line in log_lines(root, job_id)]
    for item in items:
        if clips.get(item.prompt, 0) == 1:
            continue
        notes.append(f"chat prompt {item.prompt!r} user {item.user}: clips={clips.get(item.prompt, 0)} "
                     f"sent={item.sent} submitted={item.submitted} resent_after_choice={item.resent_after_choice}")
        for request_id, state, attempts, message_id, reason in bot_answers(root / "bot.sqlite3", item.user):
            notes.append(f"    store: {request_id} {state} attempts={attempts} message={message_id} {reason or ''}")
            notes += [f"        {line}" for line in log_lines(root, request_id, 4)]
    return notes


def clip_counts(items: list[ChatPrompt], inbox: dict[int, list[Call]]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for item in items:
        counts[item.prompt] += sum(1 for call in inbox[item.user] if is_clip_for(call, item.prompt))
    return dict(counts)


# --- the run and its report ----------------------------------------------------------------------------------------
async def drive(plan: Plan, cluster: Cluster, rng: random.Random) -> tuple[HttpDriver, ChatDriver, dict[str, Any]]:
    """Run the clients and users to the end, injecting the fault on the way; then wait for late duplicates."""
    taken: set[int] = set()
    progress = Progress(plan.jobs + plan.prompts)
    http = HttpDriver(plan, cluster.url, distinct_prompts(plan.jobs, "api", taken, rng), rng, progress)
    chat = ChatDriver(plan, cluster.fake, distinct_prompts(plan.prompts, "chat", taken, rng), progress,
                      clip_patience=max(60.0, plan.timeout / 3))
    outcome: dict[str, Any] = {}
    deadline = time.monotonic() + plan.timeout
    watcher = asyncio.create_task(chat.watch())
    fault = asyncio.create_task(fault_when_due(cluster, plan, progress, rng, outcome))
    began = time.monotonic()
    await asyncio.gather(http.run(deadline), chat.run(deadline))
    outcome["load_s"] = round(time.monotonic() - began, 1)
    if not fault.done():
        cluster.note("the work finished before the fault was due: no fault injected")
        fault.cancel()
        outcome["not_injected"] = True
    else:
        fault.result()
    cluster.note(f"all clients finished; waiting {plan.settle:g} s for late or duplicate answers")
    await asyncio.sleep(plan.settle)
    chat.index()
    watcher.cancel()
    outcome["workers_alive_end"] = sum(1 for worker in cluster.workers if worker.poll() is None)
    try:
        outcome["dead_letters"] = (await asyncio.to_thread(
            queue_depth, cluster.node, cluster.env["TAG_RABBITMQ_DEAD_LETTER_QUEUE"]))[0]
    except Exception as exc:  # the queue exists only once something was dead-lettered
        outcome["dead_letters"] = f"unknown ({type(exc).__name__})"
    outcome["serve_alive_end"] = cluster.serve is not None and cluster.serve.poll() is None
    outcome["bot_alive_end"] = cluster.bot is not None and cluster.bot.poll() is None
    return http, chat, outcome


def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


TABLE_HEADER = ("| fault | HTTP once / lost / dup / mixed / failed (of N) | polls 404 | key repeats -> 2nd job "
                "| chat once / lost / dup / mixed (of N) | HTTP p50 / p95 s | chat p50 / p95 s | workers alive "
                "| run folder |\n|---|---|---|---|---|---|---|---|---|")


def table_row(plan: Plan, http: dict[str, Any], chat: dict[str, Any], outcome: dict[str, Any], root: Path) -> str:
    fault = plan.fault + (" (not injected)" if outcome.get("not_injected") else "")
    return (f"| {fault} | {http['once']} / {http['lost']} / {http['duplicated']} / {http['mixed']} / "
            f"{http['failed']} (of {plan.jobs}) | {http['polls_404']} | {http['repeats_second_job']} of "
            f"{http['repeats']} | {chat['once']} / {chat['lost']} / {chat['duplicated']} / {chat['mixed']} "
            f"(of {plan.prompts}) | {fmt_s(http['p50'])} / {fmt_s(http['p95'])} | {fmt_s(chat['p50'])} / "
            f"{fmt_s(chat['p95'])} | {outcome['workers_alive_end']} of {plan.workers} | `{root.name}` |")


def write_row(out: Path, plan: Plan, row: str, machine: str) -> None:
    """Append the run's row to `out`, creating the file with its header (machine, command) when new."""
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("# Fault load test (issue 30)\n\n"
                       f"Machine: {machine}. Sizes: {plan.jobs} HTTP jobs from {plan.clients} clients, "
                       f"{plan.prompts} chat prompts from {plan.users} users, {plan.workers} tone workers.\n"
                       "Command: `uv run python benchmarks/fault_load.py --fault FAULT "
                       f"--jobs {plan.jobs} --clients {plan.clients} --prompts {plan.prompts} --users {plan.users} "
                       f"--workers {plan.workers} --out {out}`\n\n{TABLE_HEADER}\n")
    with out.open("a") as handle:
        handle.write(row + "\n")


def parse_args(argv: list[str] | None = None) -> tuple[Plan, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fault", choices=FAULTS, default="none")
    parser.add_argument("--jobs", type=int, default=200, help="HTTP jobs in all")
    parser.add_argument("--clients", type=int, default=50, help="HTTP clients (one loopback address each)")
    parser.add_argument("--prompts", type=int, default=125, help="chat prompts in all")
    parser.add_argument("--users", type=int, default=50, help="chat users")
    parser.add_argument("--workers", type=int, default=4, help="`tag worker` processes")
    parser.add_argument("--repeats", type=int, default=40, help="HTTP jobs posted with an Idempotency-Key and "
                        "posted again a few seconds later")
    parser.add_argument("--fault-at", type=float, default=0.3, help="inject once this share of the work is done")
    parser.add_argument("--ramp", type=float, default=10.0, help="seconds over which clients and users start")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds the clients wait at most")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to wait for late duplicates at the end")
    parser.add_argument("--min-delay", type=float, default=0.5)
    parser.add_argument("--max-delay", type=float, default=2.0)
    parser.add_argument("--sse-share", type=float, default=0.5, help="share of HTTP jobs followed by event stream")
    parser.add_argument("--late-share", type=float, default=0.25, help="share of HTTP jobs posted later in the "
                        "run (at random points of its progress) instead of at their client's start")
    parser.add_argument("--upload-latency", type=float, default=0.3, help="seconds each clip upload takes on "
                        "the fake Bot API (kill-bot is aimed at one on the wire)")
    parser.add_argument("--malformed", type=int, default=500, help="messages published by --fault malformed")
    parser.add_argument("--seed", type=int, default=30)
    parser.add_argument("--dir", type=Path, default=None, help="run folder (logs, stores); default: a new one "
                        "under the system's temporary folder, kept")
    parser.add_argument("--machine", default=f"{platform.machine()}, {os.cpu_count()} cores")
    parser.add_argument("--out", type=Path, default=None, help="markdown file to append the run's row to")
    args = parser.parse_args(argv)
    plan = Plan(args.fault, args.jobs, args.clients, args.prompts, args.users, args.workers, args.repeats,
                args.fault_at, args.ramp, args.timeout, args.settle, args.min_delay, args.max_delay, args.seed,
                args.sse_share, args.malformed, args.late_share, args.upload_latency)
    return plan, args


def main(argv: list[str] | None = None) -> int:
    plan, args = parse_args(argv)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    root = args.dir or Path(tempfile.mkdtemp(prefix=f"fault-load-{plan.fault}-{stamp}-"))
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(plan.seed)
    cluster = Cluster(plan, root)
    try:
        cluster.start()
        http, chat, outcome = asyncio.run(drive(plan, cluster, rng))
    finally:
        cluster.stop()
    http_counts = http_tally(http.jobs)
    chat_counts, mixed = chat_tally(chat.items, chat.inbox)
    notes = evidence(root, http.jobs, chat.items, clip_counts(chat.items, chat.inbox)) + mixed
    row = table_row(plan, http_counts, chat_counts, outcome, root)
    outcome["logs"] = log_counts(root)
    result = {"plan": asdict(plan), "http": http_counts, "chat": chat_counts, "outcome": outcome,
              "events": cluster.events, "anomalies": notes, "row": row}
    (root / "result.json").write_text(json.dumps(result, indent=2, default=str))
    (root / "jobs.json").write_text(json.dumps([asdict(j) for j in http.jobs], indent=1))
    (root / "prompts.json").write_text(json.dumps([asdict(i) for i in chat.items], indent=1))
    print("\n".join(["", TABLE_HEADER, row, "", json.dumps({"http": http_counts, "chat": chat_counts,
                                                               "outcome": outcome}, default=str), *notes[:200]]))
    print(f"\nrun folder (logs, stores, result.json): {root}")
    if args.out:
        write_row(args.out, plan, row, args.machine)
    bad = (http_counts["lost"] + http_counts["duplicated"] + http_counts["mixed"] + chat_counts["lost"]
           + chat_counts["duplicated"] + chat_counts["mixed"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

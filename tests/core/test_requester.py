"""The Requester: the one client-side path from a prompt to a validated, ranked, submitted request and its answer."""
import time

import pytest

from tag_testkit.signals import interruptible
from tag_testkit.tone import ToneBackend, VoiceToneBackend
from tagcore.catalog import BackendCatalog
from tagcore.config import Config
from tagcore.errors import InvalidRequest, RequestTimedOut, SubmitFailed, TagError, UnknownBackend
from tagcore.fairness import FAIR_SPAN
from tagcore.inprocess import InProcessTransport
from tagcore.messages import SoundRequest, SoundResponse
from tagcore.requester import DEFAULT_DURATION, Requester
from tagcore.transport import Event, TransportClient
from tagcore.worker import GeneratorService, start_embedded_worker


class RecordingClient(TransportClient):
    """A transport client that keeps what is sent (or refuses it) and lets the test play the worker's answers."""

    def __init__(self, refuse: Exception | None = None) -> None:
        self.sent: list[SoundRequest] = []
        self.cancelled: list[str] = []
        self.refuse = refuse
        self.listeners: list = []

    def add_listener(self, listener) -> None:
        self.listeners.append(listener)

    def submit(self, request: SoundRequest) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.sent.append(request)

    def cancel(self, request_id: str) -> None:
        self.cancelled.append(request_id)

    def close(self) -> None:
        pass

    def answer(self, event: Event) -> None:
        for listener in self.listeners:
            listener(event)


def catalog_of(*classes) -> BackendCatalog:
    catalog = BackendCatalog()
    catalog.add_installed([cls.spec({}) for cls in classes])
    return catalog


def requester(client=None, **kwargs) -> Requester:
    config = kwargs.pop("config", Config(default_backend="tone", max_duration=30.0, request_timeout=100.0))
    return Requester(client or RecordingClient(), catalog_of(ToneBackend, VoiceToneBackend), config,
                     source="test", **kwargs)


def test_a_request_gets_the_backends_own_name_the_default_duration_and_the_deadline():
    before = time.time()
    request = requester().request("a bell", backend="sine")  # an alias
    assert request.backend == "tone" and request.duration == DEFAULT_DURATION and request.client == "test"
    assert before + 100.0 <= request.deadline <= time.time() + 100.0
    speech = requester(default_duration=4.0, timeout=7.0).request("hello", backend="voice_tone")
    assert speech.duration == 30.0  # speech: the longest allowed, only a bound
    assert speech.deadline == pytest.approx(time.time() + 7.0, abs=1.0)


def test_a_start_timeout_sets_the_start_deadline_counted_from_submission():
    client = RecordingClient()
    req = requester(client)
    assert req.request("a bell").start_deadline is None
    request = req.request("a bell", start_timeout=5.0)
    request.start_deadline = 0.0  # a stale value: submitting counts anew
    before = time.time()
    req.submit(request, "ann", start_timeout=5.0)
    assert before + 5.0 <= client.sent[0].start_deadline <= time.time() + 5.0
    untimed = req.request("b")
    req.submit(untimed, "ann")
    assert untimed.start_deadline is None


def test_no_backend_means_the_configured_default_and_unknown_names_are_refused():
    assert requester().request("a bell").backend == "tone"
    with pytest.raises(UnknownBackend, match="unknown backend 'nope'"):
        requester().request("a bell", backend="nope")


@pytest.mark.parametrize("fields, message", [
    ({"duration": 99.0}, "out of range"),
    ({"candidates": 999}, "candidates must be between"),
    ({"seed": -1}, "the seed must be between"),
])
def test_invalid_requests_are_refused_before_anything_is_sent(fields, message):
    client = RecordingClient()
    with pytest.raises(InvalidRequest, match=message):
        requester(client).request("a bell", **fields)
    assert client.sent == []


def test_a_users_second_request_ranks_below_everyones_first_until_an_answer_frees_it():
    client = RecordingClient()
    req = requester(client, priority=1)
    first, second = req.request("a"), req.request("b")
    other = req.request("c")
    req.submit(first, "ann")
    req.submit(second, "ann")
    req.submit(other, "bob")
    assert (first.priority, second.priority, other.priority) == (1 + FAIR_SPAN, FAIR_SPAN, 1 + FAIR_SPAN)
    client.answer(SoundResponse(request_id=first.request_id, ok=False, error_code="x", error_message="x"))
    third = req.request("d")
    req.submit(third, "ann")
    assert third.priority == FAIR_SPAN  # one of ann's is still unfinished


@pytest.mark.parametrize("refusal, message", [(TagError("the broker is down"), "the broker is down"),
                                              (ConnectionError("boom"), "ConnectionError")])
def test_a_refused_submit_is_undone_and_said(refusal, message):
    client = RecordingClient(refuse=refusal)
    req = requester(client)
    undone = []
    request = req.request("a")
    with pytest.raises(SubmitFailed, match=message) as caught:
        req.submit(request, "ann", undo=lambda: undone.append(request.request_id))
    assert caught.value.code == "transport_unavailable" and undone == [request.request_id]
    client.refuse = None
    again = req.request("b")
    req.submit(again, "ann")
    assert again.priority == FAIR_SPAN  # the refused one no longer counts against ann


def test_only_awaited_answers_are_kept():
    client = RecordingClient()
    req = requester(client)
    followed, awaited = req.request("a"), req.request("b")
    req.submit(followed, "ann")
    req.submit(awaited, "ann", awaited=True)
    for request in (followed, awaited):
        client.answer(SoundResponse(request_id=request.request_id, ok=False, error_code="x", error_message="x"))
    assert req.wait(awaited.request_id, 1.0).request_id == awaited.request_id
    with pytest.raises(RequestTimedOut):
        req.wait(followed.request_id, 0.05)


def test_cancel_reaches_the_transport():
    client = RecordingClient()
    requester(client).cancel("abc")
    assert client.cancelled == ["abc"]


def test_generate_is_one_call_from_prompt_to_answer_over_a_real_worker():
    config = Config(default_backend="tone", max_duration=30.0)
    transport = InProcessTransport(config)
    backend = ToneBackend()
    service = GeneratorService({"tone": backend}, transport.job_source([ToneBackend.spec({})]), config)
    thread, stop = start_embedded_worker(service)
    try:
        req = Requester(transport.client(), catalog_of(ToneBackend), config, source="test")
        stages = []
        answer = req.generate("a bell", duration=1.0, seed=3, on_progress=lambda e: stages.append(e.stage))
        assert answer.ok and answer.seed == 3 and answer.audio.frames == 16000 and stages
    finally:
        stop.set()
        thread.join(5)
        transport.close()


def test_tag_generate_computes_the_backends_spec_once(tmp_path, monkeypatch):
    """A spec may read the weights' config from disk: one embedded start computes it once, for the request's
    checks, the worker's announcement and its own checks alike."""
    from click.testing import CliRunner

    from tagcore.cli import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TAG_CONFIG", str(tmp_path / "absent.toml"))
    calls = []
    original = ToneBackend.spec.__func__

    def counted(cls, settings):
        calls.append(cls.name)
        return original(cls, settings)

    monkeypatch.setattr(ToneBackend, "spec", classmethod(counted))
    result = CliRunner().invoke(cli, ["generate", "a bell", "-b", "tone", "-d", "1", "-q", "-o", "bell.wav"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert calls == ["tone"]


def test_a_ctrl_c_during_a_submit_keeps_waiting_for_the_answer_to_its_cancel():
    """The transport may have sent the request before the interrupt (RabbitMQ publishes what `submit` accepted):
    the CLI then cancels it and waits for that answer, which must not be thrown away as never sent."""
    client = RecordingClient(refuse=KeyboardInterrupt())
    asking = requester(client)
    request = asking.request("a bell")
    with pytest.raises(KeyboardInterrupt):
        asking.submit(request, "me", awaited=True)
    asking.cancel(request.request_id)
    client.answer(SoundResponse(request_id=request.request_id, ok=False, error_code="cancelled"))
    assert asking.wait(request.request_id, 1).error_code == "cancelled"
    assert client.cancelled == [request.request_id]


WAITING_MAIN_THREAD = """
import signal, threading, time
from tagcore.client import ResponseWaiter

class Silent:  # a transport client that never answers
    def add_listener(self, listener): pass

def interrupt_from_another_thread():
    time.sleep(0.5)
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # the kernel may hand a Ctrl-C to any thread

threading.Thread(target=interrupt_from_another_thread).start()
started = time.monotonic()
try:
    ResponseWaiter(Silent()).wait("never", 60)
except KeyboardInterrupt:
    print(f"interrupted after {time.monotonic() - started:.1f} s")
"""


def test_a_ctrl_c_reaches_a_caller_waiting_for_an_answer_even_when_another_thread_takes_the_signal():
    """`tag generate` waits on its main thread while transport threads run; the interrupt must end the wait
    (it used to be noticed only when the wait timed out: here after 60 s)."""
    import subprocess
    import sys

    done = subprocess.run(interruptible([sys.executable, "-c", WAITING_MAIN_THREAD]), capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.startswith("interrupted after"), done.stdout + done.stderr
    assert float(done.stdout.split()[2]) < 30, done.stdout  # 0.5 s plus one slice; never the whole minute

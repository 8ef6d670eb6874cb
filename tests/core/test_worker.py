"""The generator service over the in-process transport, driven by the tone backend."""
import threading
import time

import numpy as np
import pytest

from tag_testkit.tone import ToneBackend, tone_frequency
from tagcore.client import ResponseWaiter
from tagcore.config import Config
from tagcore.inprocess import InProcessTransport
from tagcore.messages import SoundRequest
from tagcore.scoring import Scorer
from tagcore.worker import GeneratorService, start_embedded_worker


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


@pytest.fixture
def setup():
    config = Config(max_batch=8)
    transport = InProcessTransport(config)
    backend = ToneBackend()
    backend.ensure_loaded()
    yield config, transport, backend


def run_service(config, transport, backend, requests, scorer=None):
    """Queue every request first, then start the worker, so compatible ones can share a batch."""
    source = transport.job_source([ToneBackend.spec({})], prefetch=8)
    client = transport.client()
    waiter = ResponseWaiter(client)
    events = []
    for r in requests:
        waiter.submit(r, on_progress=events.append)
    service = GeneratorService({"tone": backend}, source, config, scorer=scorer)
    thread, stop = start_embedded_worker(service)
    try:
        return [waiter.wait(r.request_id, 30) for r in requests], events
    finally:
        stop.set()
        thread.join(5)


def test_compatible_requests_are_batched_and_each_answered(setup):
    config, transport, backend = setup
    ToneBackend.batches.clear()
    prompts = [f"prompt {i}" for i in range(5)]
    requests = [SoundRequest(prompt=p, duration=1.0, backend="tone", seed=i) for i, p in enumerate(prompts)]
    requests.append(SoundRequest(prompt="longer", duration=2.0, backend="sine", seed=9))  # alias, other duration
    responses, events = run_service(config, transport, backend, requests)
    assert sorted(ToneBackend.batches) == [1, 5]
    for request, response in zip(requests, responses):
        assert response.ok and response.request_id == request.request_id and response.seed == request.seed
        assert response.audio.frames == int(request.duration * 16000)
        assert abs(dominant_frequency(response.audio.samples[0], 16000) - tone_frequency(request.prompt)) <= 1.0
    stages = {e.stage for e in events}
    assert {"queued", "generating"} <= stages


def test_missing_seed_is_drawn_and_reported(setup):
    responses, _ = run_service(*setup, [SoundRequest(prompt="a", duration=1.0, backend="tone")])
    assert isinstance(responses[0].seed, int)


def test_every_bad_request_gets_an_error_response_and_the_worker_goes_on(setup):
    config, transport, backend = setup
    requests = [
        SoundRequest(prompt="   ", duration=1.0, backend="tone"),
        SoundRequest(prompt="x" * 600, duration=1.0, backend="tone"),
        SoundRequest(prompt="ok", duration=45.0, backend="tone"),
        SoundRequest(prompt="ok", duration=1.0, backend="tone", options={"steps": 3}),
        SoundRequest(prompt="ok", duration=1.0, backend="tone", options={"weights": "/etc"}),
        SoundRequest(prompt="ok", duration=1.0, backend="tone", options={"fail": True}),
        SoundRequest(prompt="ok", duration=1.0, backend="tone", deadline=time.time() - 1),
        SoundRequest(prompt="ok", duration=1.0, backend="tone", seed=1),
    ]
    responses, _ = run_service(config, transport, backend, requests)
    codes = [r.error_code for r in responses]
    assert codes == ["empty_prompt", "invalid_request", "invalid_request", "unknown_option", "invalid_request",
                     "generation_failed", "timed_out", None]
    assert "30 s" in responses[2].error_message and "asked to fail" in responses[5].error_message
    assert responses[-1].ok


def test_a_job_taken_after_its_start_deadline_is_answered_expired_without_running(setup):
    config, transport, backend = setup
    now = time.time()
    late = SoundRequest(prompt="too late", duration=1.0, backend="tone", created_at=now - 31, start_deadline=now - 1)
    timely = SoundRequest(prompt="in time", duration=1.0, backend="tone", start_deadline=now + 600)
    started = len(ToneBackend.started)
    responses, _ = run_service(config, transport, backend, [late, timely])
    assert not responses[0].ok and responses[0].error_code == "expired"
    assert "start_timeout of 30 s" in responses[0].error_message
    assert responses[1].ok
    assert ToneBackend.started[started:] == ["in time"]  # the late one never reached the backend


def test_a_batch_that_starts_after_a_members_start_deadline_drops_it(setup):
    """Jobs taken together run batch after batch: one still waiting when its start deadline passes expires."""
    config, transport, backend = setup
    source = transport.job_source([ToneBackend.spec({})], prefetch=8)
    waiter = ResponseWaiter(transport.client())
    slow = SoundRequest(prompt="slow", duration=1.0, backend="tone", options={"delay": 1.0})
    now = time.time()
    waiting = SoundRequest(prompt="behind", duration=2.0, backend="tone", created_at=now - 9.5,
                           start_deadline=now + 0.5)  # another duration: its own batch, after the slow one
    for request in (slow, waiting):
        waiter.submit(request)
    service = GeneratorService({"tone": backend}, source, config)
    started = len(ToneBackend.started)
    service.process(source.next_jobs(8, 5.0))
    answers = [waiter.wait(r.request_id, 5) for r in (slow, waiting)]
    assert answers[0].ok and answers[1].error_code == "expired" and "of 10 s" in answers[1].error_message
    assert ToneBackend.started[started:] == ["slow"]


class QuietestWins(Scorer):
    name = "quietest"

    def score(self, prompts, audios):
        return [-float(np.abs(a.samples).max()) for a in audios]


def test_candidates_are_ranked_by_the_scorer(setup):
    config, transport, backend = setup
    request = SoundRequest(prompt="c", duration=1.0, backend="tone", seed=5, candidates=3)
    responses, _ = run_service(config, transport, backend, [request], scorer=QuietestWins(config))
    meta = responses[0].metadata
    assert meta["chosen_candidate"] == 2 and meta["scorer"] == "quietest"
    assert meta["candidate_scores"] == pytest.approx([-0.5, -0.25, -0.5 / 3], abs=1e-4)
    assert np.abs(responses[0].audio.samples).max() == pytest.approx(0.5 / 3, abs=1e-4)


def test_no_worker_for_backend_is_answered_not_silent():
    transport = InProcessTransport(Config())
    waiter = ResponseWaiter(transport.client())
    response = waiter.submit_and_wait(SoundRequest(prompt="a", duration=1.0, backend="tone"), timeout=5)
    assert not response.ok and response.error_code == "no_worker"


def test_model_is_loaded_once_and_kept(setup):
    config, transport, backend = setup
    loads = []
    original = backend.load
    backend.loaded = False
    backend.load = lambda: (loads.append(1), original())[1]
    run_service(config, transport, backend, [SoundRequest(prompt=str(i), duration=1.0, backend="tone",
                                                          options={"amplitude": i / 10}) for i in range(3)])
    assert loads == [1]


def test_release_puts_a_job_back(setup):
    config, transport, backend = setup
    source = transport.job_source([ToneBackend.spec({})])
    client = transport.client()
    client.submit(SoundRequest(prompt="a", duration=1.0, backend="tone"))
    (job,) = source.next_jobs(1, 1.0)
    job.release()
    (again,) = source.next_jobs(1, 1.0)
    assert again.request.request_id == job.request.request_id
    assert source.next_jobs(1, 0.05) == []


def test_one_structured_log_line_per_job(setup, caplog):
    config, transport, backend = setup
    requests = [SoundRequest(prompt=f"p{i}", duration=1.0, backend="tone", seed=i) for i in range(3)]
    requests.append(SoundRequest(prompt="bad", duration=1.0, backend="tone", options={"fail": True}))
    requests.append(SoundRequest(prompt="", duration=1.0, backend="tone"))
    with caplog.at_level("INFO", logger="tagcore.jobs"):
        run_service(config, transport, backend, requests)
    lines = {r.getMessage().split()[1]: r.getMessage() for r in caplog.records if r.name == "tagcore.jobs"}
    assert set(lines) == {r.request_id for r in requests}
    ok = lines[requests[0].request_id]
    assert "backend=tone duration=1 batch=3 seconds=" in ok and ok.endswith("outcome=ok")
    failed = lines[requests[3].request_id]
    assert " batch=1 " in failed and failed.endswith("outcome=generation_failed")
    assert "batch=0 seconds=0.000 outcome=empty_prompt" in lines[requests[4].request_id]


def test_invalid_options_that_no_check_foresaw_cost_only_that_request(setup, monkeypatch):
    """A validation bug (an exception other than TagError) answers that request and the worker keeps serving."""
    config, transport, backend = setup
    from tagcore import worker as worker_module

    real = worker_module.validate_request

    def flaky(request, cls, cfg):
        if request.prompt == "boom":
            raise KeyError("unexpected")
        return real(request, cls, cfg)

    monkeypatch.setattr(worker_module, "validate_request", flaky)
    bad = SoundRequest(prompt="boom", duration=1.0, backend="tone")
    good = SoundRequest(prompt="fine", duration=1.0, backend="tone")
    responses, _ = run_service(config, transport, backend, [bad, good])
    assert not responses[0].ok and responses[0].error_code == "invalid_request" and "KeyError" in responses[0].error_message
    assert responses[1].ok

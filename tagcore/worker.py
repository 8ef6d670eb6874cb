"""The generator service: takes jobs from any transport, runs one backend per request, answers every job.

Data flows one way: JobSource -> validate -> group compatible requests -> backend.generate_batch -> rank
candidates -> fit to the requested duration -> Job.respond. Every job gets exactly one response: audio, or an
error response with a code and a message (never silence). Models stay loaded between jobs.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from .audio import fit_duration
from .backend import Backend, GenerationItem, GenerationResult, new_seed
from .config import Config
from .errors import Cancelled, GenerationFailed, InvalidRequest, RequestTimedOut, StartExpired, TagError
from .metrics import Metrics
from .messages import ProgressEvent, SoundRequest, SoundResponse
from .scoring import Scorer, rank
from .spec import BackendSpec
from .threads import ThreadShare
from .transport import Job, JobSource
from .validation import validate_request

log = logging.getLogger(__name__)
jobs_log = logging.getLogger("tagcore.jobs")
"""One line per answered job (request id, backend, duration, batch size, seconds, outcome): a worker's access log."""
PROGRESS_INTERVAL = 0.5  # seconds between progress events of one batch


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def served_specs(backends: Mapping[str, Backend]) -> list[BackendSpec]:
    """What a worker holding these (configured) backends announces: each spec refined by its worker options."""
    return [BackendSpec.from_backend(type(backend), backend.settings) for backend in backends.values()]


class GeneratorService:
    """Serves `backends` (name -> loaded or loadable instance) from `source` until stopped."""

    def __init__(
        self,
        backends: Mapping[str, Backend],
        source: JobSource,
        config: Config,
        *,
        scorer: Scorer | None = None,
        max_batch: int | None = None,
        worker_id: str | None = None,
        threads: ThreadShare | None = None,
        specs: Sequence[BackendSpec] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.backends = dict(backends)
        self.specs = {spec.name: spec for spec in (specs if specs is not None else served_specs(self.backends))}
        """What the worker announced (`specs`, when the caller computed them already: they may read weight files)."""
        self.aliases = {alias: spec.name for spec in self.specs.values() for alias in spec.aliases}
        self.source = source
        self.config = config
        self.scorer = scorer
        self.max_batch = max(1, max_batch or config.max_batch)
        self.worker_id = worker_id or default_worker_id()
        self.served = 0
        self.threads = threads
        """When set, the CPU thread share is re-applied before every batch (other workers may come and go)."""
        self.metrics = metrics
        """When set, every answer is counted and timed there (`tag worker --metrics-port`, a frontend's /metrics)."""

    def run(self, stop: threading.Event, poll: float = 0.5) -> None:
        """Process jobs until `stop` is set; the job in hand is finished first."""
        for backend in self.backends.values():
            backend.ensure_loaded()
        while not stop.is_set():
            jobs = self.source.next_jobs(self.max_batch, poll)
            if jobs:
                self.process(jobs)

    def process(self, jobs: Sequence[Job]) -> None:
        """Validate, group and generate `jobs`; each gets exactly one response."""
        groups: dict[tuple, list[tuple[Job, dict[str, Any]]]] = defaultdict(list)
        for job in jobs:
            request = job.request
            if job.cancelled:  # dropped before it starts
                self._fail(job, Cancelled("the request was cancelled before it started"))
                continue
            try:
                backend = self._backend_for(request)
                options = validate_request(request, self.specs[backend.name], self.config)
                backend.check_request(options, negative_prompt=request.negative_prompt,
                                      audio_prompt=request.audio_prompt)
                if request.deadline is not None and time.time() > request.deadline:
                    raise RequestTimedOut("the request timed out while waiting in the queue")
                if (late := start_expired(request)) is not None:
                    raise late
            except TagError as error:
                self._fail(job, error)
                continue
            except Exception as exc:  # a request no check foresaw must cost that request, never the worker
                log.exception("could not validate request %s", request.request_id)
                self._fail(job, InvalidRequest(f"the request could not be checked: {type(exc).__name__}: {exc}"))
                continue
            groups[(backend.name, request.batch_key())].append((job, options))
        for (name, _), members in groups.items():
            backend = self.backends[name]
            size = self.max_batch if backend.capabilities.batch else 1
            for start in range(0, len(members), size):
                self._generate(backend, members[start:start + size])

    def _backend_for(self, request: SoundRequest) -> Backend:
        name = self.aliases.get(request.backend, request.backend)
        if name not in self.backends:
            raise TagError(f"this worker does not serve backend {request.backend!r}", code="unknown_backend")
        return self.backends[name]

    def _unexpired(self, members: list[tuple[Job, dict[str, Any]]]) -> list[tuple[Job, dict[str, Any]]]:
        """The members still allowed to start; the others are answered `expired`. A batch may start long after
        its jobs were taken (the batches taken with it ran first)."""
        starting = []
        for job, options in members:
            if (late := start_expired(job.request)) is not None:
                self._fail(job, late)
            else:
                starting.append((job, options))
        return starting

    def _generate(self, backend: Backend, members: list[tuple[Job, dict[str, Any]]]) -> None:
        members = self._unexpired(members)
        if not members:
            return
        jobs = [job for job, _ in members]
        requests = [job.request for job in jobs]
        items = [
            GenerationItem(
                prompt=r.prompt.strip(),
                seed=new_seed() if r.seed is None else r.seed,
                candidates=r.candidates,
                negative_prompt=r.negative_prompt,
                audio_prompt=r.audio_prompt,
            )
            for r in requests
        ]
        progress = _ProgressFanout(jobs)
        started = time.perf_counter()
        try:
            backend.ensure_loaded()
            if self.threads is not None:
                self.threads.apply()
            progress(0.0, "generating")
            results = backend.generate_batch(items, requests[0].duration, options=members[0][1], progress=progress)
            if len(results) != len(items):
                raise GenerationFailed(f"{backend.name} returned {len(results)} results for {len(items)} prompts")
        except TagError as error:  # Cancelled included: every job of the batch was cancelled
            for job in jobs:
                self._fail(job, error, len(jobs), started)
            return
        except Exception as exc:  # a backend bug must cost one batch, never the worker
            log.exception("backend %s failed", backend.name)
            for job in jobs:
                self._fail(job, GenerationFailed(f"{backend.name} failed: {type(exc).__name__}: {exc}"), len(jobs),
                           started)
            return
        elapsed = time.perf_counter() - started
        for job, item, result in zip(jobs, items, results):
            if job.cancelled:  # cancelled while the rest of its batch went on
                self._fail(job, Cancelled("the request was cancelled while it was generated"), len(jobs), started)
                continue
            try:
                self._deliver(job, backend, item, result, elapsed / len(jobs), len(jobs), started)
            except Exception as exc:
                log.exception("could not finish request %s", job.request.request_id)
                self._fail(job, GenerationFailed(f"could not finish the clip: {exc}"), len(jobs), started)

    def _deliver(self, job: Job, backend: Backend, item: GenerationItem, result: GenerationResult,
                 batch_share: float, batch: int, started: float) -> None:
        request = job.request
        metadata = dict(result.metadata)
        candidates = list(result.candidates)
        if len(candidates) > 1:
            if self.scorer is not None:
                try:
                    order, scores = rank(self.scorer, item.prompt, candidates)
                except Exception as exc:  # a broken scorer must not cost the clips: deliver the first, say so
                    log.warning("scorer %s failed for %s: %s", self.scorer.name, request.request_id, exc)
                    reason = exc.message if isinstance(exc, TagError) else f"{type(exc).__name__}: {exc}"
                    order, scores = list(range(len(candidates))), None
                    metadata["scorer_error"] = (f"the {self.scorer.name} scorer failed ({reason}); "
                                                "delivered the first candidate unranked")
                metadata.update(candidate_scores=scores, chosen_candidate=order[0], scorer=self.scorer.name)
                candidates = [candidates[i] for i in order]
            else:
                metadata.update(candidate_scores=None, chosen_candidate=0, scorer=None)
        audio = fit_duration(candidates[0], request.duration, upper_bound=self.specs[backend.name].variable_length)
        timings = dict(result.timings)
        timings.setdefault("generate_s", batch_share)
        self._respond(job, SoundResponse(
            ok=True,
            audio=audio,
            prompt=request.prompt,
            duration=request.duration,
            backend=result.backend,
            model_id=result.model_id,
            seed=result.seed,
            timings=timings,
            metadata=metadata,
            worker=self.worker_id,
            **request.routing(),
        ), batch, started)
        self.served += 1

    def _fail(self, job: Job, error: TagError, batch: int = 0, started: float | None = None) -> None:
        self._respond(job, SoundResponse.failure(job.request, error, worker=self.worker_id), batch, started)

    def _respond(self, job: Job, response: SoundResponse, batch: int, started: float | None) -> None:
        job.respond(response)
        r = job.request
        seconds = time.perf_counter() - started if started is not None else 0.0
        if self.metrics is not None:  # label values only from served backends: a request cannot invent series
            name = self.aliases.get(r.backend, r.backend)
            self.metrics.answered(name if name in self.backends else "unknown", r, response,
                                  seconds if started is not None else None)
        jobs_log.info("job %s backend=%s duration=%g batch=%d seconds=%.3f outcome=%s", r.request_id, r.backend,
                      r.duration, batch, seconds, "ok" if response.ok else response.error_code)


def start_expired(request: SoundRequest) -> StartExpired | None:
    """The answer for a request taken after its start deadline (None while it may still start): the client
    asked for it not to run at all once it waited that long."""
    if request.start_deadline is None or time.time() <= request.start_deadline:
        return None
    return StartExpired.after(request.start_deadline - request.created_at)  # both from the client's clock


class _ProgressFanout:
    """Sends throttled progress events to every job of a batch, and stops the backend (raises Cancelled) once
    every job of the batch was cancelled: backends call it between steps, so that is where they stop."""

    def __init__(self, jobs: Sequence[Job]) -> None:
        self.jobs = jobs
        self.last = 0.0

    def __call__(self, fraction: float, stage: str = "generating") -> None:
        if all(job.cancelled for job in self.jobs):
            raise Cancelled("the request was cancelled while it was generated")
        now = time.monotonic()
        if now - self.last < PROGRESS_INTERVAL and 0.0 < fraction < 1.0:
            return
        self.last = now
        for job in self.jobs:
            r = job.request
            try:
                job.progress(ProgressEvent.about(r, stage, fraction=max(0.0, min(1.0, fraction))))
            except Exception:  # progress is best effort; the response is what matters
                log.warning("progress event for %s was lost", r.request_id, exc_info=True)


def start_embedded_worker(service: GeneratorService) -> tuple[threading.Thread, threading.Event]:
    """Run a service in a daemon thread (in-process transport); set the returned event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), name="tag-worker", daemon=True)
    thread.start()
    return thread, stop

"""OpenAI-compatible text to speech: `POST /v1/audio/speech` answers with the audio once its job is done, and
`POST /v1/audio/voices` keeps a speaker sample to clone."""
# No `from __future__ import annotations`: FastAPI evaluates the route annotations.
import asyncio
from typing import Annotated

from fastapi import APIRouter, File, Request, UploadFile
from fastapi.responses import Response

from tagcore import audio as audio_io
from tagcore.spec import BackendSpec

from ..errors import ApiError, error_schemas, status_for
from ..jobs import TERMINAL, JobRecord
from ..schemas import GenerateRequest
from ..services import Caller, Protected, Services, Shared
from ..speech import MEDIA_TYPES, OPENAI_MODELS, SpeechRequest, VoiceSample, check_format, encode_speech, \
    speech_options
from ..submission import enqueue

router = APIRouter(prefix="/v1/audio", tags=["speech"], dependencies=Protected)


def speech_backend(state: Services, model: str) -> BackendSpec:
    """The speech backend an OpenAI `model` names: OpenAI's own names mean the default (or first) speech one."""
    catalog = state.catalog
    if model in OPENAI_MODELS:
        specs = {entry.spec.name: entry.spec for entry in catalog.entries()}
        speaking = [spec for spec in specs.values() if spec.variable_length]
        default = specs.get(catalog.default or "")
        chosen = default if default is not None and default.variable_length else next(iter(speaking), None)
        if chosen is None:
            raise ApiError(400, "unknown_backend", "this server offers no speech backend")
        return chosen
    spec = catalog.resolve(model)
    if not spec.variable_length:
        raise ApiError(400, "not_speech", f"backend {spec.name!r} makes sounds, not speech: name a speech "
                                          "backend as the model")
    return spec


async def wait_until_finished(request: Request, record: JobRecord, state: Services) -> None:
    """Wait on the job as one of its clients (tag_http.waiting) until it finished; a hang-up is decided at once,
    as the caller cannot come back to this response."""
    store, waiting = state.store, state.waiting
    stream, hung_up = waiting.new_stream(record.id), False
    try:
        await waiting.begin(record.id, stream)
        while record.state not in TERMINAL:
            if store.closed:
                raise ApiError(503, "shutting_down", "the server is shutting down")
            if await request.is_disconnected():
                hung_up = True
                raise ApiError(499, "cancelled", "the client closed the connection")
            await store.wait_for_change(record, record.version, 1.0)
    finally:
        waiting.end(record.id, stream, hung_up, delay=0.0)


@router.post("/voices", response_model=VoiceSample, responses=error_schemas(400, 401, 413, 429))
def upload_voice(who: Caller, state: Shared,
                 file: Annotated[UploadFile, File(description="a WAV/FLAC/OGG/MP3 sample of the voice")]
                 ) -> VoiceSample:
    """Upload a speaker sample; pass its id as `voice` to clone it (kept for a day)."""
    return state.voices.add(audio_io.decode(file.file.read(audio_io.MAX_INPUT_BYTES + 1)))


@router.post("/speech", responses={
    200: {"content": {t: {} for t in MEDIA_TYPES.values()}, "description": "the spoken text"},
    **error_schemas(400, 401, 410, 422, 429, 503, 504)})
async def speech(request: Request, body: SpeechRequest, who: Caller, state: Shared) -> Response:
    """OpenAI-compatible text to speech: answers with the audio once the job is done. A caller that hangs up
    first cancels the job, unless another client waits on it (an event stream of the job)."""
    spec = speech_backend(state, body.model)
    sample = state.voices.get(body.voice)
    options = speech_options(spec, body, sample)
    check_format(body.response_format)
    generate = GenerateRequest.model_validate({"prompt": body.input, "backend": spec.name, "options": options})
    record, _ = await asyncio.to_thread(enqueue, state, generate, sample, who, spec)
    await wait_until_finished(request, record, state)
    snap, _ = state.store.snapshot(record)
    if snap.state != "done":
        raise ApiError(status_for(snap.error_code), snap.error_code or "failed", snap.error_message or "the job failed")
    wav = await asyncio.to_thread(state.store.result_bytes, snap, "wav")  # any replica may hold the answer
    if wav is None:
        raise ApiError(410, "expired", "the result expired before it could be sent")
    clip = await asyncio.to_thread(audio_io.decode, wav)
    data = await asyncio.to_thread(encode_speech, clip, body.response_format)
    return Response(data, media_type=MEDIA_TYPES[body.response_format],
                    headers={"X-Tag-Job-Id": record.id, "Cache-Control": "no-store"})

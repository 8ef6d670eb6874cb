"""Request, progress and response messages and their wire format.

Wire format, version 2 (one message = one byte string, the same on every transport):

    b"TAGM" | uint32 big-endian header length | UTF-8 JSON header | optional raw audio payload

The header is a JSON object with `"v": 2` and `"kind"` (request, progress, response). When audio travels
(a request's audio prompt, a response's result) the header's `"audio"` object describes the payload:
`{"sample_rate", "channels", "frames", "dtype": "float32le"}` and the payload is exactly
channels * frames * 4 bytes, channel-major. No pickle, no base64, no float lists: decoding never executes
anything and every field is type-checked, so a malformed message is rejected with a `MessageError`.

Routing: every message carries the request id, the reply address and `context`, an opaque JSON object of scalars
that belongs to the frontend (the bot keeps its chat there); the core and the workers only copy it back, through
one constructor (`routing`). Version 1 carried Telegram's chat_id/user_id instead and is refused.
"""
from __future__ import annotations

import json
import math
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .audio_types import Audio
from .errors import MessageError, TagError

MAGIC = b"TAGM"
VERSION = 2
MAX_HEADER_BYTES = 256 * 1024
MAX_AUDIO_BYTES = 64 * 1024 * 1024
MAX_MESSAGE_BYTES = 8 + MAX_HEADER_BYTES + MAX_AUDIO_BYTES
MAX_PROMPT_CHARS = 2000
MAX_WIRE_DURATION = 3600.0
MAX_CONTEXT_BYTES = 4096
MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays/objects a header may have (options and metadata are shallow; a deep one is an
attack: Python's parser would hit its recursion limit)."""
MAX_INT = 2**63 - 1
"""Every integer on the wire fits a signed 64-bit value (seeds, chat ids, sizes)."""
_PREFIX = struct.Struct(">4sI")


def new_request_id() -> str:
    return uuid.uuid4().hex


Context = dict[str, str | int | float | bool | None]
"""What a frontend needs to route an answer (a chat, a user...): opaque to the core, copied to every event."""


@dataclass
class SoundRequest:
    """Everything a worker needs to produce one clip, and what a frontend needs to route the answer back."""

    prompt: str
    duration: float
    backend: str
    request_id: str = field(default_factory=new_request_id)
    seed: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    candidates: int = 1
    negative_prompt: str | None = None
    audio_prompt: Audio | None = None
    context: Context = field(default_factory=dict)
    client: str = ""
    reply_to: str | None = None
    created_at: float = field(default_factory=time.time)
    deadline: float | None = None
    """Unix time after which an answer is no longer useful (the worker answers `timed_out` instead of running)."""
    start_deadline: float | None = None
    """Unix time by which a worker must have started the request, or it is answered `expired` without running
    (a client's `start_timeout`: a job that waited too long in the queue is no longer wanted)."""
    priority: int = 0
    """0 (lowest) to 9, set by the frontend (tagcore.fairness). Not part of the wire header: transports carry it
    as the order they hand requests out in (RabbitMQ: the priority's queue the request is published to)."""

    kind = "request"

    def batch_key(self) -> tuple:
        """Requests with equal keys can share one batched backend call."""
        return (self.backend, round(self.duration, 6), json.dumps(self.options, sort_keys=True))

    def routing(self) -> dict[str, Any]:
        """The fields every event about this request carries back to its frontend."""
        return {"request_id": self.request_id, "reply_to": self.reply_to, "context": dict(self.context)}


@dataclass
class ProgressEvent:
    """Where a request stands: queued (with position), loading, generating (fraction), encoding."""

    request_id: str
    stage: str
    fraction: float = 0.0
    position: int | None = None
    message: str = ""
    context: Context = field(default_factory=dict)
    reply_to: str | None = None

    kind = "progress"

    @classmethod
    def about(cls, request: SoundRequest, stage: str, **fields: Any) -> "ProgressEvent":
        """A progress event routed like `request`."""
        return cls(stage=stage, **request.routing(), **fields)


@dataclass
class SoundResponse:
    """The outcome of a request: audio plus how it was made, or an error code with a human message."""

    request_id: str
    ok: bool
    audio: Audio | None = None
    prompt: str = ""
    duration: float = 0.0
    backend: str = ""
    model_id: str = ""
    seed: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None
    context: Context = field(default_factory=dict)
    reply_to: str | None = None
    worker: str = ""

    kind = "response"

    @classmethod
    def failure(cls, request: SoundRequest, error: TagError, *, worker: str = "") -> "SoundResponse":
        """An error response that still carries the routing fields, so the user hears back."""
        return cls(ok=False, prompt=request.prompt, duration=request.duration, backend=request.backend,
                   seed=request.seed, error_code=error.code, error_message=error.message, worker=worker,
                   **request.routing())


Message = SoundRequest | ProgressEvent | SoundResponse

# Field name -> accepted JSON types (None allowed where the dataclass default is None).
_INT = (int,)
_NUM = (int, float)
_STR = (str,)
_SCHEMAS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "request": {
        "prompt": (_STR, False), "duration": (_NUM, False), "backend": (_STR, False),
        "request_id": (_STR, False), "seed": (_INT, True), "options": ((dict,), False),
        "candidates": (_INT, False), "negative_prompt": (_STR, True), "context": ((dict,), False),
        "client": (_STR, False), "reply_to": (_STR, True),
        "created_at": (_NUM, False), "deadline": (_NUM, True), "start_deadline": (_NUM, True),
    },
    "progress": {
        "request_id": (_STR, False), "stage": (_STR, False), "fraction": (_NUM, False),
        "position": (_INT, True), "message": (_STR, False), "context": ((dict,), False),
        "reply_to": (_STR, True),
    },
    "response": {
        "request_id": (_STR, False), "ok": ((bool,), False), "prompt": (_STR, False),
        "duration": (_NUM, False), "backend": (_STR, False), "model_id": (_STR, False),
        "seed": (_INT, True), "timings": ((dict,), False), "metadata": ((dict,), False),
        "error_code": (_STR, True), "error_message": (_STR, True), "context": ((dict,), False),
        "reply_to": (_STR, True), "worker": (_STR, False),
    },
}
_CLASSES = {"request": SoundRequest, "progress": ProgressEvent, "response": SoundResponse}
_LEFT_OUT_WHEN_NONE = frozenset({"start_deadline"})
"""Fields added to version 2 after its release: not sent while unset, so a worker of an earlier release (whose
schema refuses unknown fields) still reads every request that does not use them."""


def encode(message: Message) -> bytes:
    """Serialise a message to the version-2 wire format."""
    _check_context(message.context)
    header: dict[str, Any] = {"v": VERSION, "kind": message.kind}
    for name in _SCHEMAS[message.kind]:
        value = getattr(message, name)
        if value is not None or name not in _LEFT_OUT_WHEN_NONE:
            header[name] = value
    audio = getattr(message, "audio_prompt", None) if message.kind == "request" else getattr(message, "audio", None)
    payload = b""
    if audio is not None:
        payload = audio.samples.astype("<f4", copy=False).tobytes()
        header["audio"] = {"sample_rate": audio.sample_rate, "channels": audio.channels,
                           "frames": audio.frames, "dtype": "float32le"}
    raw_header = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    if len(raw_header) > MAX_HEADER_BYTES:
        raise MessageError(f"message header is {len(raw_header)} bytes, over the {MAX_HEADER_BYTES} limit")
    if len(payload) > MAX_AUDIO_BYTES:
        raise MessageError(f"audio is {len(payload)} bytes, over the {MAX_AUDIO_BYTES} limit")
    return _PREFIX.pack(MAGIC, len(raw_header)) + raw_header + payload


def decode(data: bytes) -> Message:
    """Parse and validate a wire message; raise MessageError saying exactly what is wrong."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MessageError("message is not bytes")
    data = bytes(data)
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessageError(f"message is {len(data)} bytes, over the {MAX_MESSAGE_BYTES} limit")
    if len(data) < _PREFIX.size:
        raise MessageError("message is too short to hold a header")
    magic, header_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise MessageError("not a TAG message (bad magic bytes)")
    if header_len > MAX_HEADER_BYTES or _PREFIX.size + header_len > len(data):
        raise MessageError("header length is out of bounds")
    header = _parse_header(data[_PREFIX.size:_PREFIX.size + header_len])
    if not isinstance(header, dict):
        raise MessageError("header is not a JSON object")
    if header.get("v") != VERSION:
        raise MessageError(f"unsupported message version {str(header.get('v'))[:40]!r} (this build speaks {VERSION})")
    kind = header.get("kind")
    if not isinstance(kind, str) or kind not in _SCHEMAS:
        raise MessageError(f"unknown message kind {str(kind)[:40]!r}")
    fields = _check_fields(kind, header)
    if "context" in fields:
        _check_context(fields["context"])
    audio = _decode_audio(header.get("audio"), data[_PREFIX.size + header_len:])
    if kind == "request":
        fields["audio_prompt"] = audio
        _check_request(fields)
    elif kind == "response":
        fields["audio"] = audio
        if fields.get("ok") and audio is None:
            raise MessageError("a successful response must carry audio")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in fields.get("timings", {}).values()):
            raise MessageError("response.timings must map names to numbers of seconds")
    elif audio is not None:
        raise MessageError("progress events carry no audio")
    return _CLASSES[kind](**fields)


def _parse_header(raw: bytes) -> Any:
    """JSON with everything Python's parser would accept but a peer must not send refused up front: nesting
    deeper than MAX_JSON_DEPTH (checked on the bytes, before the recursive parser runs), NaN/Infinity,
    numbers that overflow to infinity or exceed 64 bits, and strings that are not valid Unicode."""
    depth = _nesting_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise MessageError(f"header nests {depth} levels deep, over the {MAX_JSON_DEPTH} limit")
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float,
                            parse_int=_bounded_int)
    except MessageError:
        raise
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError, so is int digit limits
        raise MessageError(f"header is not valid JSON: {exc}") from None
    _check_strings(header)
    return header


def _nesting_depth(raw: bytes) -> int:
    """Deepest bracket nesting outside JSON strings, in linear time and without recursion.

    A quote opens or closes a string unless an odd run of backslashes precedes it; brackets between an odd and
    the next even quote are inside a string. This is exact for valid JSON, and for invalid JSON it is exact up
    to the first error, which is as far as the parser gets.
    """
    chars = np.frombuffer(raw, dtype=np.uint8)
    if chars.size == 0:
        return 0
    index = np.arange(chars.size)
    backslash = chars == ord("\\")
    last_other = np.maximum.accumulate(np.where(backslash, -1, index))
    run_before = np.concatenate(([0], index[:-1] - last_other[:-1]))  # backslashes right before each byte
    quote = (chars == ord('"')) & (run_before % 2 == 0)
    outside = np.cumsum(quote) % 2 == 0
    steps = (np.isin(chars, (ord("["), ord("{"))).astype(np.int64)
             - np.isin(chars, (ord("]"), ord("}")))) * outside
    return int(np.cumsum(steps).max())


def _refuse_constant(name: str) -> Any:
    raise MessageError(f"header holds {name}, which is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise MessageError(f"header number {text[:40]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > 20 or abs(value := int(text)) > MAX_INT:
        raise MessageError(f"header integer {text[:40]} is out of the 64-bit range")
    return value


def _check_strings(value: Any) -> None:
    """Every string (keys included) must be encodable UTF-8: lone surrogates would break the reply."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise MessageError("header holds a string with an unpaired surrogate") from None
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _check_fields(kind: str, header: dict[str, Any]) -> dict[str, Any]:
    schema = _SCHEMAS[kind]
    unknown = set(header) - set(schema) - {"v", "kind", "audio"}
    if unknown:
        raise MessageError(f"unknown {kind} field(s): {', '.join(sorted(unknown))}")
    fields: dict[str, Any] = {}
    for name, (types, nullable) in schema.items():
        if name not in header:
            continue
        value = header[name]
        if value is None and nullable:
            fields[name] = None
            continue
        if isinstance(value, bool) and bool not in types:
            raise MessageError(f"{kind}.{name} must be {types[0].__name__}, got a boolean")
        if not isinstance(value, types):
            raise MessageError(f"{kind}.{name} must be {types[0].__name__}, got {type(value).__name__}")
        fields[name] = value
    required = {"request": ("prompt", "duration", "backend"), "progress": ("request_id", "stage"),
                "response": ("request_id", "ok")}[kind]
    missing = [n for n in required if n not in fields]
    if missing:
        raise MessageError(f"{kind} is missing {', '.join(missing)}")
    return fields


def _check_context(context: dict[str, Any]) -> None:
    if not all(isinstance(k, str) and (v is None or isinstance(v, (str, int, float, bool)))
               for k, v in context.items()):
        raise MessageError("context must be a JSON object of strings, numbers, booleans or nulls")
    if len(json.dumps(context)) > MAX_CONTEXT_BYTES:
        raise MessageError(f"context is over {MAX_CONTEXT_BYTES} bytes")


def _check_request(fields: dict[str, Any]) -> None:
    duration = fields["duration"]
    if not math.isfinite(duration) or not 0 < duration <= MAX_WIRE_DURATION:
        raise MessageError(f"duration {duration!r} is outside (0, {MAX_WIRE_DURATION:g}] seconds")
    if len(fields["prompt"]) > MAX_PROMPT_CHARS:
        raise MessageError(f"prompt is over {MAX_PROMPT_CHARS} characters")
    if not 1 <= fields.get("candidates", 1) <= 64:
        raise MessageError("candidates must be between 1 and 64")
    if not 0 < len(fields.get("request_id", "x")) <= 128:
        raise MessageError("request_id must be 1 to 128 characters")


def _decode_audio(spec: Any, payload: bytes) -> Audio | None:
    if spec is None:
        if payload:
            raise MessageError("payload present but the header describes no audio")
        return None
    if not isinstance(spec, dict) or spec.get("dtype") != "float32le":
        raise MessageError("audio description must be an object with dtype float32le")
    values: list[Any] = [spec.get(k) for k in ("sample_rate", "channels", "frames")]
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in values):
        raise MessageError("audio description needs integer sample_rate, channels and frames")
    rate, channels, frames = (int(n) for n in values)
    if not (1 <= rate <= 384_000 and 1 <= channels <= 8 and frames >= 0):
        raise MessageError("audio description is out of range")
    if len(payload) != channels * frames * 4:
        raise MessageError(f"audio payload is {len(payload)} bytes, expected {channels * frames * 4}")
    samples = np.frombuffer(payload, dtype="<f4").reshape(channels, frames)
    if not np.isfinite(samples).all():
        raise MessageError("audio holds NaN or infinite samples")
    return Audio(samples.astype(np.float32), rate)

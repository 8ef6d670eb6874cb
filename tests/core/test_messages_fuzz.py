"""Property test: `decode` answers any byte string with a message or a MessageError, and nothing else.

A worker decodes whatever lands in its queue; any other exception (RecursionError, OverflowError, KeyError...)
would escape the consumer. Hypothesis throws random bytes, random JSON headers, and valid messages with one
field replaced by random JSON at it.
"""
from __future__ import annotations

import json
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tagcore.errors import MessageError
from tagcore.messages import decode, encode, SoundRequest

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
"""Derandomized: the same examples on every machine and run (the project's tests are deterministic)."""

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
FIELDS = ["prompt", "duration", "backend", "request_id", "seed", "options", "candidates", "negative_prompt",
          "client", "reply_to", "context", "created_at", "deadline", "audio", "v", "kind", "stage", "fraction", "position",
          "ok", "timings", "metadata", "sample_rate"]


def framed(header: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">4sI", b"TAGM", len(header)) + header + payload


def decode_or_message_error(data: bytes) -> None:
    try:
        decode(data)
    except MessageError:
        pass


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes(data):
    decode_or_message_error(data)
    decode_or_message_error(b"TAGM" + data)


@FUZZ
@given(st.binary(max_size=256), st.binary(max_size=64))
def test_random_header_bytes(header, payload):
    decode_or_message_error(framed(header, payload))


@FUZZ
@given(st.sampled_from(["request", "progress", "response"]),
       st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6),
       st.binary(max_size=64))
def test_structured_headers(kind, fields, payload):
    base = {"request": {"prompt": "p", "duration": 2.0, "backend": "tone"},
            "progress": {"request_id": "a", "stage": "generating"},
            "response": {"request_id": "a", "ok": False}}[kind]
    header = {"v": 2, "kind": kind, **base, **fields}
    decode_or_message_error(framed(json.dumps(header).encode(), payload))


@FUZZ
@given(st.integers(0, 200), st.binary(min_size=1, max_size=8))
def test_mutated_valid_messages(position, replacement):
    data = bytearray(encode(SoundRequest(prompt="rain", duration=2.0, backend="tone", options={"steps": [1, 2]})))
    position = min(position, len(data) - 1)
    data[position:position + len(replacement)] = replacement
    decode_or_message_error(bytes(data))


@FUZZ
@given(st.integers(1, 300), st.sampled_from([b"[", b"{", b'{"a":', b'["\\"', b"[1,"]))
def test_deep_nesting(depth, opener):
    decode_or_message_error(framed(opener * depth * 400))

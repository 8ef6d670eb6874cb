import json
import struct

import numpy as np
import pytest

from tagcore import Audio
from tagcore.errors import MessageError
from tagcore.messages import (MAX_AUDIO_BYTES, MAX_HEADER_BYTES, ProgressEvent, SoundRequest, SoundResponse,
                              decode, encode)


def frame(header: dict, payload: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack(">4sI", b"TAGM", len(raw)) + raw + payload


def test_request_with_audio_prompt_round_trips():
    clip = Audio(np.linspace(-1, 1, 2 * 800, dtype=np.float32).reshape(2, 800), 22050)
    request = SoundRequest(prompt="rain on a tin roof", duration=8.0, backend="audiogen", seed=7,
                           options={"steps": 25}, candidates=2, audio_prompt=clip,
                           context={"chat_id": -1001, "user_id": 42, "thread": "t", "silent": False},
                           reply_to="amq.gen-x", deadline=123.5)
    back = decode(encode(request))
    assert isinstance(back, SoundRequest)
    for name in ("prompt", "duration", "backend", "seed", "options", "candidates", "context",
                 "reply_to", "deadline", "request_id", "created_at"):
        assert getattr(back, name) == getattr(request, name)
    assert back.audio_prompt.sample_rate == 22050
    np.testing.assert_array_equal(back.audio_prompt.samples, clip.samples)


def test_response_and_progress_round_trip():
    audio = Audio(np.sin(np.arange(16000, dtype=np.float32)), 16000)
    response = SoundResponse("abc", True, audio=audio, prompt="p", duration=1.0, backend="tone", model_id="m",
                             seed=3, timings={"generate_s": 0.5}, metadata={"scores": [0.1, 0.2]},
                             context={"chat_id": 5})
    back = decode(encode(response))
    assert back.ok and back.seed == 3 and back.metadata == {"scores": [0.1, 0.2]} and back.context == {"chat_id": 5}
    np.testing.assert_array_equal(back.audio.samples, audio.samples)
    event = decode(encode(ProgressEvent("abc", "generating", fraction=0.4, position=2)))
    assert isinstance(event, ProgressEvent) and event.fraction == 0.4 and event.position == 2


def test_error_response_round_trips_without_audio():
    request = SoundRequest(prompt="p", duration=1.0, backend="tone", context={"chat_id": 9}, reply_to="q")
    from tagcore.errors import RequestTimedOut
    back = decode(encode(SoundResponse.failure(request, RequestTimedOut("too late"))))
    assert not back.ok and back.error_code == "timed_out" and back.error_message == "too late"
    assert (back.request_id, back.reply_to, back.context) == (request.request_id, "q", {"chat_id": 9})
    progress = ProgressEvent.about(request, "generating", fraction=0.5)
    assert (progress.request_id, progress.reply_to, progress.context) == (request.request_id, "q", {"chat_id": 9})


def test_a_start_deadline_round_trips_and_is_left_out_while_unset():
    request = SoundRequest(prompt="p", duration=1.0, backend="tone", start_deadline=1234.5)
    back = decode(encode(request))
    assert isinstance(back, SoundRequest) and back.start_deadline == 1234.5
    plain = encode(SoundRequest(prompt="p", duration=1.0, backend="tone"))
    assert b"start_deadline" not in plain  # a worker of an earlier release refuses unknown fields
    assert decode(plain).start_deadline is None


GOOD = {"v": 2, "kind": "request", "prompt": "p", "duration": 2.0, "backend": "tone"}


def test_a_header_from_before_start_deadlines_still_decodes():
    back = decode(frame({**GOOD, "deadline": 99.0}))
    assert isinstance(back, SoundRequest) and back.start_deadline is None and back.deadline == 99.0


@pytest.mark.parametrize("data, reason", [
    (b"", "too short"),
    (b"XXXX\x00\x00\x00\x02{}", "magic"),
    (struct.pack(">4sI", b"TAGM", 100) + b"{}", "out of bounds"),
    (struct.pack(">4sI", b"TAGM", 3) + b"\xff\xfe\x00", "JSON"),
    (frame([1, 2]), "not a JSON object"),
    (frame({**GOOD, "v": 3}), "version"),
    (frame({**GOOD, "v": 1, "chat_id": 5}), "unsupported message version '1' \\(this build speaks 2\\)"),
    (frame({**GOOD, "chat_id": 5}), "unknown request field"),
    (frame({**GOOD, "context": {"chat": [1]}}), "context must be"),
    (frame({**GOOD, "context": {"k": "x" * 5000}}), "context is over"),
    (frame({**GOOD, "kind": "pickle"}), "kind"),
    (frame({**GOOD, "duration": "10"}), "duration must be"),
    (frame({**GOOD, "duration": True}), "boolean"),
    (frame({**GOOD, "duration": -1}), "outside"),
    (frame({**GOOD, "duration": 1e9}), "outside"),
    (frame({**GOOD, "prompt": "x" * 5000}), "over"),
    (frame({**GOOD, "candidates": 0}), "candidates"),
    (frame({**GOOD, "seed": 1.5}), "seed must be"),
    (frame({**GOOD, "start_deadline": "soon"}), "start_deadline must be"),
    (frame({**GOOD, "evil": 1}), "unknown request field"),
    (frame({k: v for k, v in GOOD.items() if k != "prompt"}), "missing prompt"),
    (frame(GOOD, b"\x00" * 8), "payload present"),
    (frame({**GOOD, "audio": {"sample_rate": 16000, "channels": 1, "frames": 4, "dtype": "float32le"}}, b"\x00" * 8),
     "expected 16"),
    (frame({**GOOD, "audio": {"sample_rate": 16000, "channels": 1, "frames": 1, "dtype": "float64"}}, b"\x00" * 4),
     "dtype"),
    (frame({**GOOD, "audio": {"sample_rate": 16000, "channels": 1, "frames": 1, "dtype": "float32le"}},
           np.array([np.nan], dtype="<f4").tobytes()), "NaN"),
    (frame({"v": 2, "kind": "response", "request_id": "a", "ok": True}), "must carry audio"),
    (frame({"v": 2, "kind": "progress", "request_id": "a", "stage": "x",
            "audio": {"sample_rate": 1, "channels": 1, "frames": 0, "dtype": "float32le"}}), "no audio"),
    ("not bytes", "not bytes"),
])
def test_malformed_messages_are_rejected_with_a_reason(data, reason):
    with pytest.raises(MessageError, match=reason):
        decode(data)


def test_size_limits():
    with pytest.raises(MessageError, match="header length"):
        decode(struct.pack(">4sI", b"TAGM", MAX_HEADER_BYTES + 1) + b"x" * (MAX_HEADER_BYTES + 1))
    with pytest.raises(MessageError, match="limit"):
        decode(b"TAGM" + b"\x00" * (MAX_AUDIO_BYTES + MAX_HEADER_BYTES + 16))
    huge = Audio(np.zeros((1, MAX_AUDIO_BYTES // 4 + 1), dtype=np.float32), 16000)
    with pytest.raises(MessageError, match="over the"):
        encode(SoundRequest(prompt="p", duration=1.0, backend="tone", audio_prompt=huge))
    with pytest.raises(MessageError, match="header"):
        encode(SoundRequest(prompt="p", duration=1.0, backend="tone", options={"x": "y" * MAX_HEADER_BYTES}))


# -- poison messages: anything a peer can send gets a MessageError, never another exception ------------------
def raw_frame(header: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">4sI", b"TAGM", len(header)) + header + payload


AUDIO = '{"sample_rate": %s, "channels": 1, "frames": 0, "dtype": "float32le"}'


@pytest.mark.parametrize("header, reason", [
    (b"[" * 100_000 + b"]" * 100_000, "nests 100000 levels"),  # RecursionError in json.loads
    (b'{"v": 2, "kind": "request", "options": ' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}", "nests"),
    (b"[" * 100_000, "nests"),  # unbalanced
    (('{"v":2,"kind":"request","prompt":"p","duration":2,"backend":"t","audio":%s}' % (AUDIO % "Infinity")).encode(),
     "Infinity"),  # OverflowError in int()
    (('{"v":2,"kind":"request","prompt":"p","duration":2,"backend":"t","audio":%s}' % (AUDIO % "1e999")).encode(),
     "out of range"),
    (('{"v":2,"kind":"request","prompt":"p","duration":2,"backend":"t","audio":%s}' % (AUDIO % "16000.0")).encode(),
     "integer sample_rate"),
    (b'{"v":2,"kind":"request","prompt":"p","duration":NaN,"backend":"t"}', "NaN"),
    (b'{"v":2,"kind":"request","prompt":"p","duration":-Infinity,"backend":"t"}', "Infinity"),
    (b'{"v":2,"kind":"request","prompt":"p","duration":2,"backend":"t","seed":' + b"9" * 5000 + b"}", "64-bit"),
    (b'{"v":2,"kind":"request","prompt":"p","duration":2,"backend":"t","seed":' + b"9" * 20 + b"}", "64-bit"),
    (b'{"v":2,"kind":"request","prompt":"\\ud800","duration":2,"backend":"t"}', "surrogate"),
    (b'{"v":2,"kind":"progress","request_id":"a","stage":"x","fraction":1e400}', "out of range"),
    (b'{"v":2,"kind":"response","request_id":"a","ok":false,"timings":{"generate_s":"soon"}}', "timings"),
])
def test_poison_headers_are_refused_with_a_message_error(header, reason):
    with pytest.raises(MessageError, match=reason):
        decode(raw_frame(header))


def test_brackets_inside_strings_do_not_count_as_nesting():
    deep_text = "[" * 1000 + '\\"{' * 100 + "\\\\"
    message = SoundRequest(prompt="p", duration=1.0, backend="tone", options={"text": deep_text, "n": [[1, 2]]})
    assert decode(encode(message)).options == message.options


def test_largest_64_bit_integers_still_pass():
    header = b'{"v":2,"kind":"progress","request_id":"a","stage":"x","position":9223372036854775807}'
    assert decode(raw_frame(header)).position == 2**63 - 1

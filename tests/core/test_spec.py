"""BackendSpec: a backend described as data (what frontends read instead of classes) and its JSON form."""
from __future__ import annotations

import json
import logging

import pytest

from tag_testkit.tone import ToneBackend, VoiceToneBackend
from tagcore.catalog import BackendCatalog
from tagcore.config import Config
from tagcore.errors import InvalidRequest, MessageError, UnknownBackend
from tagcore.messages import SoundRequest
from tagcore.spec import SPEC_VERSION, BackendSpec
from tagcore.validation import validate_request


def test_a_spec_carries_every_declaration_of_the_class():
    spec = BackendSpec.from_backend(VoiceToneBackend)
    assert (spec.name, spec.sample_rate, spec.channels, spec.max_duration) == ("voice_tone", 16000, 1, 60.0)
    assert spec.variable_length and spec.capabilities.audio_prompt_role == "voice"
    assert spec.options == VoiceToneBackend.options
    assert [o.name for o in spec.request_options] == ["amplitude", "delay", "fail", "reject"]


def test_json_round_trip_is_exact():
    spec = BackendSpec.from_backend(ToneBackend)
    text = spec.to_json()
    assert json.loads(text)["v"] == SPEC_VERSION
    assert BackendSpec.from_json(text) == spec
    assert BackendSpec.from_json(BackendSpec.from_backend(VoiceToneBackend).to_json()).capabilities.max_audio_prompt == 30.0


@pytest.mark.parametrize(("change", "message"), [
    ({"v": 99}, "unsupported backend spec version 99"),
    ({"sample_rate": "16000"}, "sample_rate must be int"),
    ({"max_duration": float("inf")}, None),
    ({"surprise": 1}, "unknown backend spec field"),
    ({"capabilities": {"seed": "yes"}}, "capability seed must be bool"),
    ({"capabilities": {"audio_prompt_role": "style"}}, "bad capabilities"),
    ({"options": [{"name": "x", "type": "complex", "default": 1, "help": ""}]}, "unknown type"),
    ({"options": [{"name": "x", "type": "int", "default": [1], "help": ""}]}, "default must be"),
    ({"min_duration": 5.0, "max_duration": 2.0}, "min_duration <= max_duration"),
    ({"name": ""}, "name must be 1 to 100"),
])
def test_malformed_specs_are_refused_with_a_reason(change, message):
    data = BackendSpec.from_backend(ToneBackend).to_dict() | change
    if message is None:  # not representable in JSON at all
        with pytest.raises(ValueError):
            json.dumps(data, allow_nan=False)
        return
    with pytest.raises(MessageError, match=message):
        BackendSpec.from_json(json.dumps(data))


def test_not_json_is_refused():
    with pytest.raises(MessageError, match="not valid JSON"):
        BackendSpec.from_json(b"\xff{")


def test_a_backend_refines_its_spec_from_the_weights_it_loads(tmp_path):
    (tmp_path / "tone.json").write_text('{"gain": 1.0, "max_duration": 12.5}')
    settings = ToneBackend.resolve_worker_options({"weights": str(tmp_path)})
    assert BackendSpec.from_backend(ToneBackend, settings).max_duration == 12.5
    assert BackendSpec.from_backend(ToneBackend).max_duration == 60.0


def test_validation_reads_the_spec():
    spec = BackendSpec.from_backend(ToneBackend)
    limited = BackendSpec.from_dict(spec.to_dict() | {"max_duration": 3.0})
    request = SoundRequest(prompt="bell", duration=4.0, backend="tone")
    assert validate_request(request, spec, Config())["amplitude"] == 0.5
    with pytest.raises(InvalidRequest, match="tone makes 1 to 3 s"):
        validate_request(request, limited, Config())


def test_catalog_resolves_aliases_and_the_newest_announcement_wins(caplog):
    catalog = BackendCatalog()
    spec = BackendSpec.from_backend(ToneBackend)
    catalog.add_installed([spec])
    assert catalog.canonical("sine") == "tone" and not catalog.is_available("tone")
    assert not catalog.entry("sine").announced
    longer = BackendSpec.from_dict(spec.to_dict() | {"max_duration": 90.0})
    catalog.announce(spec, worker="w1")
    catalog.set_workers("tone", 2)
    with caplog.at_level(logging.WARNING, logger="tagcore.catalog"):
        catalog.announce(longer, worker="w2")
    assert "workers disagree about backend 'tone'" in caplog.text and "w2" in caplog.text
    assert catalog.resolve("sine").max_duration == 90.0 and catalog.is_available("tone")
    assert catalog.entry("tone").workers == 2  # a new announcement keeps the live worker count
    catalog.set_workers("tone", 0)
    assert not catalog.is_available("tone") and catalog.entry("tone").workers == 0
    catalog.add_installed([spec])  # installed specs never replace an announced one
    assert catalog.resolve("tone").max_duration == 90.0
    with pytest.raises(UnknownBackend, match="unknown backend 'hum' \\(available: tone\\)"):
        catalog.resolve("hum")


def test_configured_names_nobody_announced_are_logged(caplog):
    catalog = BackendCatalog()
    catalog.add_installed([BackendSpec.from_backend(ToneBackend)])
    with caplog.at_level(logging.WARNING, logger="tagcore.catalog"):
        catalog.warn_unknown(["sine", "tone"], "[http] backends")
        assert not caplog.text
        catalog.warn_unknown(["tone", "tnoe"], "[http] backends")
    assert "[http] backends names backend(s) tnoe that no worker announced yet" in caplog.text

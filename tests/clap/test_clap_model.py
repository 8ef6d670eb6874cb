"""A tiny CLAP built offline, used through laion_clap's public API by the `clap` scorer (in a subprocess)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tag_testkit.tiny_clap import ensure_tiny_clap

pytestmark = pytest.mark.slow
PROBE = Path(__file__).with_name("clap_probe.py")


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> dict:
    hf_home, checkpoint = ensure_tiny_clap(tmp_path_factory.getbasetemp())
    scratch = tmp_path_factory.mktemp("clap_probe")
    env = dict(os.environ, HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent.parent), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, str(PROBE), str(hf_home), str(checkpoint), str(scratch)], env=env,
                          capture_output=True, text=True, timeout=600)
    line = next((l for l in done.stdout.splitlines() if l.startswith("PROBE-JSON ")), None)
    assert done.returncode == 0 and line, done.stderr[-4000:]
    return json.loads(line[len("PROBE-JSON "):])


def test_embeddings_are_unit_norm(probe):
    assert np.allclose(probe["audio_norms"], 1.0, atol=1e-4)
    assert np.allclose(probe["text_norms"], 1.0, atol=1e-4)
    assert probe["text_distinct"] > 1e-3  # a working tokenizer: different prompts embed differently


def test_scores_are_cosines_in_range_and_equal_the_public_api(probe):
    scores = np.array(probe["scores"])
    assert np.all(np.abs(scores) <= 1.0 + 1e-5)
    assert np.allclose(scores, probe["public_scores"], atol=1e-5)


def test_scores_are_deterministic(probe):
    assert probe["scores"] == probe["scores_again"]
    long, centre = probe["long_vs_centre"]
    assert long == pytest.approx(centre, abs=1e-5)


def test_scores_do_not_depend_on_batching(probe):
    assert np.allclose(probe["scores"], probe["scores_one_by_one"], atol=1e-5)
    assert np.allclose(probe["scores"], probe["scores_batch3"], atol=1e-5)


def test_rank_orders_candidates_by_score(probe):
    order, scores = probe["rank_order"], probe["rank_scores"]
    assert sorted(order) == [0, 1, 2, 3]
    assert [scores[i] for i in order] == sorted(scores, reverse=True)
    assert len(set(np.round(scores, 6))) > 1  # the candidates really differ, so the order is meaningful


def test_missing_tokenizer_files_are_named(probe):
    message = probe["missing_tokenizer"]
    assert "vocab.json" in message and "merges.txt" in message and "roberta-base" in message
    assert "huggingface-cli download roberta-base" in message


def test_empty_tokenizer_from_laion_clap_is_refused(probe):
    message = probe["empty_tokenizer"]
    assert "EMPTY roberta-base tokenizer" in message and "vocab.json" in message

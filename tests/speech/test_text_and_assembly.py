"""Sentence splitting and joining sentences into a clip of the requested length (no model needed)."""
import numpy as np
import pytest

from tag_speech.assembly import assemble
from tag_speech.text import split_sentences
from tagcore.errors import InvalidRequest


def test_splits_on_sentence_ends_and_newlines():
    text = "Hello there.  How are you?\nFine!  Thanks…  Bye"
    assert split_sentences(text) == ["Hello there.", "How are you?", "Fine!", "Thanks…", "Bye"]


def test_abbreviation_free_text_stays_one_sentence():
    assert split_sentences("version 2.5 is out") == ["version 2.5 is out"]


def test_long_sentence_is_cut_at_clauses_then_words():
    clause = "word " * 30
    text = f"{clause.strip()}, {clause.strip()}; {'x' * 130}"
    pieces = split_sentences(text, max_chars=100)
    assert all(len(p) <= 100 for p in pieces)
    assert " ".join(pieces).split() == [w for w in text.replace(",", " ,").replace(";", " ;").split()
                                        if w not in (",", ";")] or "".join(pieces).replace(" ", "") == \
        text.replace(" ", "")


def test_cutting_keeps_every_character():
    text = ("alpha beta gamma delta, " * 20) + ("y" * 400)
    pieces = split_sentences(text, max_chars=50)
    assert all(len(p) <= 50 for p in pieces)
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")


@pytest.mark.parametrize("text", ["", "   ", "...!?", "\n\n"])
def test_text_without_words_is_rejected(text):
    with pytest.raises(InvalidRequest, match="nothing to say"):
        split_sentences(text)


def _tone(seconds: float, rate: int = 1000) -> np.ndarray:
    return np.full(int(seconds * rate), 0.5, dtype=np.float32)


def test_sentences_are_joined_with_pauses_and_not_padded():
    samples, info = assemble([_tone(1.0), _tone(0.5)], 1000, 4.0, pause=0.25)
    assert samples.shape == (1750,)
    assert np.all(samples[:1000] == 0.5) and np.all(samples[1000:1250] == 0)
    assert np.all(samples[1250:1750] == 0.5)
    assert info == {"speech_seconds": 1.75, "needed_seconds": 1.75, "sentences": 2, "sentences_spoken": 2,
                    "truncated": False}


def test_sentences_that_do_not_fit_are_dropped_with_a_notice():
    samples, info = assemble([_tone(1.0), _tone(1.0), _tone(1.0)], 1000, 2.5, pause=0.2)
    assert samples.shape == (2200,)
    assert info["sentences_spoken"] == 2 and info["truncated"]
    assert info["speech_seconds"] == 2.2 and info["needed_seconds"] == 3.4
    assert "2 of 3 sentences" in info["notice"] and "longer duration" in info["notice"]


def test_a_first_sentence_longer_than_the_clip_is_cut_with_a_fade():
    samples, info = assemble([_tone(3.0)], 1000, 2.0, pause=0.3)
    assert samples.shape == (2000,)
    assert info["truncated"] and "first sentence was cut" in info["notice"]
    assert samples[0] == 0.5 and samples[-1] == 0.0


def test_no_audio_at_all_is_a_generation_failure():
    from tagcore.errors import GenerationFailed

    with pytest.raises(GenerationFailed, match="no audio"):
        assemble([np.zeros(0, dtype=np.float32)], 1000, 2.0, pause=0.2)

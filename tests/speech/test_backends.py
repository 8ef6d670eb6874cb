"""SpeechT5 and MMS-TTS on tiny models loaded through the same code as real checkpoints."""
import numpy as np
import pytest

from tag_speech.voice import DEFAULT_VOICE_FILE, make_default_voice
from tagcore import Audio, GenerationItem
from tagcore.errors import ConfigError, InvalidRequest, TagError
from tagcore.plugins import backends

TEXT = "Hello there. The quick brown fox jumps over the lazy dog!"


def voice_sample(seconds: float, pitch: float = 180.0) -> Audio:
    t = np.arange(int(seconds * 22050)) / 22050  # another rate on purpose: the encoder resamples to 16 kHz
    return Audio(0.3 * np.sin(2 * np.pi * pitch * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2, 22050)


def test_backends_are_registered_through_the_plugin_hook():
    registry = backends()
    assert registry.get("speecht5").name == "speecht5"
    assert registry.get("mms_tts").name == "mms_tts"


@pytest.mark.parametrize("fixture", ["speecht5", "mms"])
def test_clip_is_as_long_as_the_speech_and_carries_speech_metadata(fixture, request):
    backend = request.getfixturevalue(fixture)
    result = backend.generate(TEXT, 10.0, seed=3)
    meta = result.metadata
    assert backend.variable_length and result.audio.sample_rate == 16000
    assert result.audio.frames == round(meta["speech_seconds"] * 16000) < backend.frames_for(10.0)
    assert meta["voice"] == "default" and meta["sentences"] == meta["sentences_spoken"] == 2
    assert not meta["truncated"] and meta["needed_seconds"] == meta["speech_seconds"]
    assert np.any(result.audio.samples[0, -1600:])  # no trailing silence padding
    assert result.seed == 3 and result.model_id.startswith(backend.name)


@pytest.mark.parametrize("fixture", ["speecht5", "mms"])
def test_same_seed_same_audio_other_seed_other_audio(fixture, request):
    backend = request.getfixturevalue(fixture)
    first, again = backend.generate(TEXT, 3.0, seed=11), backend.generate(TEXT, 3.0, seed=11)
    other = backend.generate(TEXT, 3.0, seed=12)
    assert np.array_equal(first.audio.samples, again.audio.samples)
    assert not np.array_equal(first.audio.samples, other.audio.samples)


@pytest.mark.parametrize("fixture", ["speecht5", "mms"])
def test_batch_results_do_not_depend_on_batch_company(fixture, request):
    backend = request.getfixturevalue(fixture)
    alone = backend.generate("Hello there.", 2.0, seed=5)
    options = backend.resolve_request_options({})
    batch = backend.generate_batch([GenerationItem("Pack my box.", 9), GenerationItem("Hello there.", 5)], 2.0,
                                   options=options)
    assert [r.seed for r in batch] == [9, 5]
    assert np.array_equal(batch[1].audio.samples, alone.audio.samples)


def test_long_text_is_split_and_truncated_with_a_notice(mms):
    text = " ".join(["The quick brown fox jumps over the lazy dog."] * 12)
    result = mms.generate(text, 2.0, seed=1)
    meta = result.metadata
    assert result.audio.frames == round(meta["speech_seconds"] * 16000) <= 32000
    assert meta["sentences"] == 12 and meta["sentences_spoken"] < 12 and meta["truncated"]
    assert meta["needed_seconds"] > 2.0 and "longer duration" in meta["notice"]


def test_pause_option_changes_the_gap(mms):
    short = mms.generate(TEXT, 6.0, seed=1, options={"pause": 0.0}).metadata
    long = mms.generate(TEXT, 6.0, seed=1, options={"pause": 1.0}).metadata
    assert long["speech_seconds"] == pytest.approx(short["speech_seconds"] + 1.0, abs=1e-3)


def test_speaking_rate_changes_length(mms):
    slow = mms.generate(TEXT, 10.0, seed=1, options={"speaking_rate": 0.5}).metadata["speech_seconds"]
    fast = mms.generate(TEXT, 10.0, seed=1, options={"speaking_rate": 2.0}).metadata["speech_seconds"]
    assert slow > fast


def test_mms_reports_its_language_and_rejects_text_it_cannot_read(mms):
    assert mms.generate("hello", 1.0, seed=1).metadata["language"] == "eng"
    with pytest.raises(InvalidRequest, match="cannot read"):
        mms.generate("Hello. Привет.", 2.0, seed=1)


def test_default_voice_file_is_the_documented_seeded_vector(speecht5):
    shipped = np.load(DEFAULT_VOICE_FILE)
    assert shipped.shape == (512,) and np.allclose(shipped, make_default_voice())
    assert np.linalg.norm(shipped) == pytest.approx(1.0, abs=1e-5)


def test_voice_is_cloned_from_a_sample(speecht5):
    plain = speecht5.generate("Hello there.", 3.0, seed=4)
    cloned = speecht5.generate("Hello there.", 3.0, seed=4, audio_prompt=voice_sample(2.0))
    other = speecht5.generate("Hello there.", 3.0, seed=4, audio_prompt=voice_sample(2.0, pitch=90.0))
    assert cloned.metadata["voice"] == "cloned from sample (2.0 s)"
    assert not np.array_equal(plain.audio.samples, cloned.audio.samples)
    assert not np.array_equal(cloned.audio.samples, other.audio.samples)


def test_cloned_embedding_is_unit_length_and_long_samples_are_capped(speecht5):
    speecht5.generate("Hi.", 1.0, seed=1, audio_prompt=voice_sample(1.5))
    embedding, seconds = speecht5.speaker_encoder.embed(voice_sample(31.0))
    assert embedding.shape == (512,) and np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)
    assert seconds == 30.0


def _hum_then_silence(sound: float, total: float) -> Audio:
    samples = voice_sample(total).samples[0]
    samples[int(sound * 22050):] = 0.0
    return Audio(samples, 22050)


@pytest.mark.parametrize("sample, message", [
    (Audio(np.zeros(8000), 16000), "0.5 s long; send at least 1 s"),
    (Audio(np.zeros(32000), 16000), "silent"),
    (Audio(np.full(32000, 1e-4), 16000), "silent"),  # -80 dBFS hiss is not a voice
    (_hum_then_silence(0.4, 5.0), "only 0.4 s of sound"),
])
def test_unusable_voice_samples_are_rejected_before_the_encoder_loads(speech_models, sample, message):
    from tag_speech.speecht5 import SpeechT5Backend

    backend = SpeechT5Backend({"weights": str(speech_models["speecht5"]), "vocoder": str(speech_models["vocoder"]),
                               "speaker_encoder": str(speech_models["encoder"]), "device": "cpu"})
    with pytest.raises(InvalidRequest, match=message):
        backend.generate("Hello there.", 3.0, seed=1, audio_prompt=sample)
    assert backend.speaker_encoder is None


def test_speecht5_takes_a_voice_sample_not_a_continuation():
    from tag_speech.speecht5 import SpeechT5Backend

    caps = SpeechT5Backend.capabilities
    assert caps.audio_prompt_role == "voice" and not caps.continues_audio and caps.max_audio_prompt == 60.0


def test_a_voice_sample_longer_than_the_clip_is_accepted_and_used(speecht5):
    from tagcore.config import Config
    from tagcore.messages import SoundRequest
    from tagcore.validation import validate_request

    sample = voice_sample(6.0)
    validate_request(SoundRequest(prompt="Hi there.", duration=2.0, backend="speecht5", audio_prompt=sample),
                     type(speecht5).spec(speecht5.settings), Config())
    result = speecht5.generate("Hi there.", 2.0, seed=4, audio_prompt=sample)
    assert result.metadata["voice"] == "cloned from sample (6.0 s)"
    assert 0 < result.audio.duration <= 2.0
    too_long = SoundRequest(prompt="Hi.", duration=2.0, backend="speecht5", audio_prompt=voice_sample(61.0))
    with pytest.raises(InvalidRequest, match="at most 60 s"):
        validate_request(too_long, type(speecht5).spec(speecht5.settings), Config())


def test_voice_file_option(tmp_path, speech_models):
    from tag_speech.speecht5 import SpeechT5Backend

    settings = {"weights": str(speech_models["speecht5"]), "vocoder": str(speech_models["vocoder"]),
                "device": "cpu"}
    good = tmp_path / "voice.npy"
    np.save(good, np.arange(512, dtype=np.float32))
    backend = SpeechT5Backend({**settings, "voice": str(good)})
    assert backend.generate("Hello.", 1.0, seed=1).metadata["voice"] == f"file {good}"
    bad = tmp_path / "bad.npy"
    np.save(bad, np.ones(16, dtype=np.float32))
    with pytest.raises(ConfigError, match="holds 16 values"):
        SpeechT5Backend({**settings, "voice": str(bad)}).load()
    with pytest.raises(ConfigError, match="does not exist"):
        SpeechT5Backend({**settings, "voice": str(tmp_path / "none.npy")}).load()


def test_missing_speaker_encoder_fails_only_cloning(tmp_path, speech_models):
    from tag_speech.speecht5 import SpeechT5Backend

    backend = SpeechT5Backend({"weights": str(speech_models["speecht5"]), "vocoder": str(speech_models["vocoder"]),
                               "speaker_encoder": str(tmp_path / "no_encoder"), "device": "cpu"})
    assert backend.generate("Hello.", 1.0, seed=1).metadata["voice"] == "default"
    with pytest.raises(TagError, match="speaker encoder folder .*no_encoder does not exist"):
        backend.generate("Hello.", 2.0, seed=1, audio_prompt=voice_sample(1.5))


def test_mms_romanises_text_for_models_of_non_latin_scripts(tmp_path):
    """A tokenizer flagged is_uroman (facebook/mms-tts-rus and the like) gets uroman's romanisation."""
    from tag_speech.mms import MmsTtsBackend
    from tag_testkit.tiny_speech import build_mms

    backend = MmsTtsBackend({"weights": str(build_mms(tmp_path, "mms_rus", "rus", is_uroman=True)), "device": "cpu"})
    cyrillic = backend.generate("Привет. Как дела?", 5.0, seed=3)
    latin = backend.generate("Privet. Kak dela?", 5.0, seed=3)
    assert cyrillic.metadata["romanized"] and cyrillic.metadata["language"] == "rus"
    assert np.array_equal(cyrillic.audio.samples, latin.audio.samples)
    assert backend.generate("Καλημέρα κόσμε.", 5.0, seed=3).audio.frames > 0

"""Chatterbox on a tiny random model in the package's own on-disk format: equal to upstream's generate."""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tagcore import Audio, GenerationItem
from tagcore.audio import read
from tagcore.errors import InvalidRequest, WeightsMissing
from tag_testkit import tiny_chatterbox
from tag_testkit.backends import loaded_on_cpu

pytestmark = pytest.mark.slow
SEED = 7


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The tiny model; the size patches stay active while the module's tests load and run it."""
    with tiny_chatterbox.tiny_sizes():
        yield tiny_chatterbox.build_chatterbox(tmp_path_factory.mktemp("chatterbox") / "model")


@pytest.fixture(scope="module")
def sample_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("voice") / "me.wav"
    sf.write(path, tiny_chatterbox.voice_sample(7.0), 22050, subtype="FLOAT")
    return path


@pytest.fixture(scope="module")
def backend(folder):
    from tag_speech.chatterbox import ChatterboxBackend

    backend = loaded_on_cpu(ChatterboxBackend, folder)
    return backend


@pytest.fixture(scope="module")
def upstream(folder):
    from chatterbox.tts import ChatterboxTTS

    return ChatterboxTTS.from_local(folder, "cpu")


def upstream_clip(model, sentences, pause, sample_path=None, **options) -> np.ndarray:
    """What the package makes for these sentences after one seeding, joined with `pause` seconds of silence."""
    import torch

    torch.manual_seed(SEED)
    if sample_path:
        model.prepare_conditionals(str(sample_path), exaggeration=options.get("exaggeration", 0.5))
    gap = np.zeros(int(round(pause * model.sr)), dtype=np.float32)
    parts = []
    for sentence in sentences:
        parts.extend([gap] if parts else [])
        parts.append(model.generate(sentence, **options)[0].numpy())
    return np.concatenate(parts)


def test_cloned_speech_equals_upstream_generate(backend, upstream, sample_path):
    import torch

    options = {"exaggeration": 0.7, "cfg_weight": 0.4, "temperature": 0.9}
    torch.manual_seed(SEED)
    expected = upstream.generate("Hello there, friend.", audio_prompt_path=str(sample_path), **options)[0].numpy()
    result = backend.generate("Hello there, friend.", 30.0, seed=SEED, options=options,
                              audio_prompt=read(sample_path))
    assert result.audio.sample_rate == 24000 and result.metadata["voice"] == "cloned from sample (7.0 s)"
    assert result.metadata["watermark"] == "perth"
    np.testing.assert_allclose(result.audio.samples[0], expected, atol=1e-5)


def test_sentences_equal_upstream_one_by_one_and_default_voice_is_restored(backend, upstream, sample_path):
    text = "Hello there. Pack my box!"
    plain = backend.generate(text, 60.0, seed=SEED)
    assert plain.metadata["voice"] == "default" and plain.metadata["sentences_spoken"] == 2
    upstream.conds = type(upstream.conds)(backend.default_conds.t3, backend.default_conds.gen)
    np.testing.assert_allclose(plain.audio.samples[0], upstream_clip(upstream, ["Hello there.", "Pack my box!"], 0.3),
                               atol=1e-5)
    cloned = backend.generate(text, 60.0, seed=SEED, options={"pause": 0.1}, audio_prompt=read(sample_path))
    np.testing.assert_allclose(cloned.audio.samples[0],
                               upstream_clip(upstream, ["Hello there.", "Pack my box!"], 0.1, sample_path), atol=1e-5)
    again = backend.generate(text, 60.0, seed=SEED)  # the clone did not replace the default voice
    assert np.array_equal(again.audio.samples, plain.audio.samples)


def test_same_seed_same_clip_other_seed_other_clip(backend):
    first, again = backend.generate("Hello.", 10.0, seed=3), backend.generate("Hello.", 10.0, seed=3)
    assert np.array_equal(first.audio.samples, again.audio.samples)
    assert not np.array_equal(first.audio.samples, backend.generate("Hello.", 10.0, seed=4).audio.samples)


@pytest.mark.parametrize("sample, message", [
    (Audio(tiny_chatterbox.voice_sample(3.0), 22050), "3.0 s long; send at least 5 s"),
    (Audio(np.zeros(16000 * 8), 16000), "silent"),
    (Audio(np.concatenate([tiny_chatterbox.voice_sample(3.0), np.zeros(22050 * 6, np.float32)]), 22050),
     r"only \d\.\d s of sound"),
])
def test_unusable_samples_are_rejected_before_the_model_loads(folder, sample, message):
    from tag_speech.chatterbox import ChatterboxBackend

    backend = ChatterboxBackend({"weights": str(folder), "device": "cpu"})
    options = backend.resolve_request_options({})
    with pytest.raises(InvalidRequest, match=message):
        backend.generate_batch([GenerationItem("Hello.", 1, audio_prompt=sample)], 5.0, options=options)
    assert "model" not in backend.__dict__


def test_missing_files_are_named_and_no_default_voice_needs_a_sample(folder, tmp_path, sample_path):
    from tag_speech.chatterbox import ChatterboxBackend

    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("ve.safetensors", "s3gen.safetensors", "tokenizer.json"):
        (partial / name).symlink_to(folder / name)
    status = ChatterboxBackend.weights_status({"weights": str(partial)})
    assert not status.present and "t3_cfg.safetensors" in status.detail
    with pytest.raises(WeightsMissing, match="lacks t3_cfg.safetensors"):
        ChatterboxBackend({"weights": str(partial), "device": "cpu"}).load()

    (partial / "t3_cfg.safetensors").symlink_to(folder / "t3_cfg.safetensors")
    status = ChatterboxBackend.weights_status({"weights": str(partial)})
    assert status.present and "no conds.pt" in status.detail
    backend = ChatterboxBackend({"weights": str(partial), "device": "cpu"})
    with pytest.raises(InvalidRequest, match="no default voice"):
        backend.generate("Hello.", 5.0, seed=1)
    assert backend.generate("Hello.", 30.0, seed=1, audio_prompt=read(sample_path)).audio.frames > 0


def test_an_unknown_hub_id_offline_says_how_to_download(monkeypatch):
    from tag_speech.chatterbox import ChatterboxBackend

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status = ChatterboxBackend.weights_status({"weights": "nobody/no-chatterbox"})
    assert not status.present and "hf download nobody/no-chatterbox" in status.detail
    with pytest.raises(WeightsMissing, match="hf download nobody/no-chatterbox"):
        ChatterboxBackend({"weights": "nobody/no-chatterbox", "device": "cpu"}).load()


def test_tag_generate_clones_a_voice_end_to_end(folder, sample_path, tmp_path):
    """The real `tag` CLI (in a process where tiny_sizes() is active) clones me.wav into out.wav."""
    import json
    import os
    import subprocess
    import sys

    tests_dir = str(Path(__file__).parents[1])
    env = dict(os.environ, HF_HUB_OFFLINE="1", TAG_CONFIG=str(tmp_path / "absent.toml"),
               TAG_PLUGINS="inprocess,speech",
               PYTHONPATH=os.pathsep.join(filter(None, [tests_dir, os.environ.get("PYTHONPATH")])))
    (tmp_path / "me.wav").symlink_to(sample_path)
    command = [sys.executable, "-m", "tag_testkit.tiny_chatterbox", "generate", "Hello", "-b", "chatterbox",
               "--audio-prompt", "me.wav", "-O", f"weights={folder}", "--device", "cpu", "--seed", "3", "--json",
               "-q", "-o", "out.wav"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    meta = json.loads(done.stdout.strip().splitlines()[-1])
    info = sf.info(tmp_path / "out.wav")
    assert info.samplerate == 24000 and info.frames > 0
    assert meta["metadata"]["voice"] == "cloned from sample (7.0 s)" and meta["seed"] == 3

    short = tmp_path / "short.wav"
    sf.write(short, tiny_chatterbox.voice_sample(2.0), 22050)
    done = subprocess.run([*command[:8], "short.wav", *command[9:-1], "out2.wav"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 2 and "send at least 5 s" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "out2.wav").exists()


def test_the_english_model_speaks_only_english(backend):
    with pytest.raises(InvalidRequest, match="speaks only en, not 'de'.*model=multilingual"):
        backend.generate("Guten Tag.", 5.0, seed=1, options={"language": "de"})


@pytest.fixture(scope="module")
def multilingual_folder(folder, tmp_path_factory):
    """The tiny multilingual model (inside `folder`'s tiny_sizes()). Its tokenizer would download spacy-pkuseg's
    Chinese segmenter model from GitHub; without spacy_pkuseg importable the package skips it (as it says)."""
    import sys

    saved = sys.modules.get("spacy_pkuseg")
    sys.modules["spacy_pkuseg"] = None
    try:
        yield tiny_chatterbox.build_chatterbox(tmp_path_factory.mktemp("chatterbox_mtl") / "model",
                                               multilingual=True)
    finally:
        if saved is None:
            sys.modules.pop("spacy_pkuseg", None)
        else:
            sys.modules["spacy_pkuseg"] = saved


def test_multilingual_speech_equals_upstream_generate(multilingual_folder, sample_path, monkeypatch):
    import sys

    import torch
    from chatterbox.mtl_tts import ChatterboxMultilingualTTS

    from tag_speech.chatterbox import ChatterboxBackend

    monkeypatch.setitem(sys.modules, "spacy_pkuseg", None)
    backend = ChatterboxBackend({"weights": str(multilingual_folder), "model": "multilingual", "device": "cpu"})
    options = {"language": "de", "exaggeration": 0.6, "cfg_weight": 0.5, "temperature": 0.8}
    result = backend.generate("Guten Tag.", 30.0, seed=SEED, options=options, audio_prompt=read(sample_path))
    assert result.metadata["language"] == "de" and result.model_id.startswith("chatterbox-multilingual:")
    upstream = ChatterboxMultilingualTTS.from_local(multilingual_folder, "cpu")
    torch.manual_seed(SEED)
    expected = upstream.generate("Guten Tag.", language_id="de", audio_prompt_path=str(sample_path),
                                 exaggeration=0.6, cfg_weight=0.5, temperature=0.8)[0].numpy()
    np.testing.assert_allclose(result.audio.samples[0], expected, atol=1e-5)
    with pytest.raises(InvalidRequest, match="does not speak 'xx'; it knows ar, da, de"):
        backend.generate("Hallo.", 5.0, seed=1, options={"language": "xx"})


def test_a_failed_segmenter_download_is_named(multilingual_folder, monkeypatch):
    import requests
    from chatterbox.mtl_tts import ChatterboxMultilingualTTS

    from tag_speech.chatterbox import ChatterboxBackend

    def offline(*args, **kwargs):
        raise requests.ConnectionError("github.com unreachable")

    monkeypatch.setattr(ChatterboxMultilingualTTS, "from_local", offline)
    backend = ChatterboxBackend({"weights": str(multilingual_folder), "model": "multilingual", "device": "cpu"})
    with pytest.raises(WeightsMissing, match=r"spacy-pkuseg.*~/.pkuseg.*load the model once while online"):
        backend.load()

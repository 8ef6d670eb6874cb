"""`tag generate` end to end with the speech backends: real console script, weights from folders, voice sample."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf


def run_tag(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TAG_CONFIG=str(cwd / "absent.toml"), TAG_PLUGINS="inprocess,speech")
    return subprocess.run([str(Path(sys.executable).with_name("tag")), *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_generate_short_speech_with_a_voice_sample_longer_than_the_clip(tmp_path, speech_models):
    """A 12 s voice sample is fine with -d 10, and the WAV is as long as the speech, not padded to 10 s."""
    t = np.arange(12 * 16000) / 16000
    sf.write(tmp_path / "me.wav", 0.3 * np.sin(2 * np.pi * 150 * t), 16000)
    result = run_tag(["generate", "Hello there. How are you?", "-b", "speecht5", "-d", "10", "--seed", "2",
                      "-O", f"weights={speech_models['speecht5']}", "-O", f"vocoder={speech_models['vocoder']}",
                      "-O", f"speaker_encoder={speech_models['encoder']}", "--device", "cpu",
                      "--audio-prompt", "me.wav", "--json", "-q", "-o", "out.wav"], tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    info = sf.info(tmp_path / "out.wav")
    meta = json.loads(result.stdout.strip().splitlines()[-1])
    assert info.samplerate == 16000 and info.subtype == "PCM_16"
    assert 0 < info.frames < 10 * 16000 and not meta["metadata"]["truncated"]
    assert info.frames == round(meta["metadata"]["speech_seconds"] * 16000)
    assert meta["duration"] == round(info.frames / 16000, 3) and meta["requested_duration"] == 10
    assert meta["metadata"]["voice"] == "cloned from sample (12.0 s)"


def test_generate_with_a_missing_weights_folder_says_what_to_download(tmp_path):
    result = run_tag(["generate", "Hello there.", "-b", "mms_tts", "-d", "2", "-O", "weights=nowhere",
                      "--device", "cpu", "-q", "-o", "out.wav"], tmp_path)
    assert result.returncode != 0
    assert "does not exist" in result.stderr + result.stdout
    assert "hf download facebook/mms-tts-eng" in result.stderr + result.stdout
    assert not (tmp_path / "out.wav").exists()


def test_generate_bark_speech_with_a_voice_preset(tmp_path, bark_folder):
    result = run_tag(["generate", "Hello there. Pack my box.", "-b", "bark", "-d", "10", "--seed", "5",
                      "-O", f"weights={bark_folder}", "-O", "voice_preset=v2/de_speaker_1", "--device", "cpu",
                      "--json", "-q", "-o", "out.wav"], tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    info = sf.info(tmp_path / "out.wav")
    meta = json.loads(result.stdout.strip().splitlines()[-1])
    assert info.samplerate == 24000 and 0 < info.frames < 10 * 24000
    assert meta["metadata"]["voice"] == "preset v2/de_speaker_1" and meta["seed"] == 5


def test_mistakes_only_the_worker_sees_exit_2(tmp_path, speech_models, bark_folder):
    """An unknown Bark preset and a silent voice sample are found by the backend, and are still mistakes."""
    sf.write(tmp_path / "silence.wav", np.zeros(3 * 16000, dtype=np.float32), 16000)
    silent = run_tag(["generate", "Hello there.", "-b", "speecht5", "-d", "5",
                      "-O", f"weights={speech_models['speecht5']}", "-O", f"vocoder={speech_models['vocoder']}",
                      "-O", f"speaker_encoder={speech_models['encoder']}", "--device", "cpu",
                      "--audio-prompt", "silence.wav", "-q", "-o", "out.wav"], tmp_path)
    assert silent.returncode == 2 and "voice sample is silent" in silent.stderr, silent.stderr
    preset = run_tag(["generate", "Hello there.", "-b", "bark", "-d", "5", "-O", f"weights={bark_folder}",
                      "-O", "voice_preset=v2/xx_speaker_99", "--device", "cpu", "-q", "-o", "out.wav"], tmp_path)
    assert preset.returncode == 2 and "unknown Bark voice preset" in preset.stderr, preset.stderr
    assert not (tmp_path / "out.wav").exists()

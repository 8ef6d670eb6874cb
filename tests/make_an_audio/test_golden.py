"""Full-size equivalence with the official Make-An-Audio code (golden case A, fp32 CPU, derived weights).

Every stage is compared with the official run's tensors within the tolerances of the golden README; the last
test drives the user-facing command (`tag generate ... -o out.wav`) and compares the written PCM16 file.
Needs ../shared (skips otherwise) and about 4-5 GB of RAM.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow

# Max-abs tolerances from the golden README (about 10x the noise floor of the official run, 1 vs 2 threads).
TOL = {"c": 5e-5, "uc": 5e-5, "eps_first": 5e-5, "unet_eps_t981": 5e-5, "x_steps": 1e-3, "pred_x0_steps": 1e-3,
       "z": 1e-3, "mel": 1e-4, "wav_pre_tanh": 1e-2, "wav": 5e-3}
ULPS = 4 * torch.finfo(torch.float32).eps
"""Relative tolerance for values the README lists as floor 0 but that are computed, not copied: float32 sqrt and
the vectorised normal sampler are rounded differently by CPU kernels (AVX2 vs AVX-512: 1 ulp seen). Integers and
gathers from the checkpoint's own buffers are exact by construction and compared exactly."""


@pytest.fixture(scope="module")
def case(golden_dir):
    with np.load(golden_dir / "case_a.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def model(golden_weights):
    from tag_make_an_audio.model import load

    return load(golden_weights, torch.device("cpu"), torch.float32)


def close(name: str, got: torch.Tensor, case: dict) -> None:
    ref = torch.from_numpy(case[name]).float()
    got = got.detach().float().reshape(ref.shape)
    diff = (got - ref).abs().max().item()
    assert diff <= TOL[name], f"{name}: max abs diff {diff:.3g} > {TOL[name]:g}"


def test_official_key_manifest_matches_the_tiny_writer(golden_dir):
    """The tiny-folder writer produces exactly the official key names/shapes at full size."""
    from tag_testkit.make_an_audio_tiny import FULL, ldm_shapes, vocoder_args

    official = {k: tuple(v) for k, v in json.loads((golden_dir / "maa1_full.keys.json").read_text()).items()}
    assert ldm_shapes(FULL, 30522) == official
    import yaml
    from bigvgan import BigVGAN
    from bigvgan.env import AttrDict

    with torch.device("meta"):
        ours = BigVGAN(AttrDict(vocoder_args(FULL))).state_dict()
    manifest = json.loads((golden_dir / "best_netG.keys.json").read_text())
    assert {k: list(v.shape) for k, v in ours.items()} == manifest
    official_args = yaml.safe_load((golden_dir / "bigvgan_args.yml").read_text())
    assert {k: official_args[k] for k in vocoder_args(FULL)} == vocoder_args(FULL)


def test_tokens_and_text_conditioning(model, case):
    assert model.tokenize([str(case["prompt"])]).tolist() == case["input_ids"].tolist()
    assert model.tokenize([""]).tolist() == case["uc_input_ids"].tolist()
    close("c", model.encode_text([str(case["prompt"])]), case)
    close("uc", model.encode_text([""]), case)


def test_ddim_tables(model, case):
    tables = model.ddim_tables(int(case["ddim_steps"]))
    assert tables.timesteps == case["ddim_timesteps"].tolist()
    assert torch.equal(tables.alphas, torch.from_numpy(case["ddim_alphas"]))  # gathered from alphas_cumprod
    assert torch.equal(tables.alphas_prev, torch.from_numpy(case["ddim_alphas_prev"]))
    torch.testing.assert_close(tables.sqrt_one_minus_alphas, torch.from_numpy(case["ddim_sqrt_one_minus_alphas"]),
                               rtol=ULPS, atol=0)  # computed: float32 sqrt


def test_unet_noise_predictions(model, case):
    c, uc = torch.from_numpy(case["c"]), torch.from_numpy(case["uc"])
    x = torch.from_numpy(case["start_code"])
    close("eps_first", model.unet_eps(torch.cat([x, x]), int(case["eps_first_t"]), torch.cat([uc, c])), case)
    close("unet_eps_t981", model.unet_eps(torch.from_numpy(case["unet_x_t981"]), int(case["unet_t"]), c), case)


def test_seeded_start_noise_and_sampling(model, case):
    from tag_make_an_audio.model import latent_width

    width = latent_width(float(case["duration"]))
    assert width == int(case["latent_width"])
    torch.manual_seed(int(case["seed"]))
    noise = torch.randn(model.latent_shape(1, width))
    # The same draw from the same seeded generator: equal up to the sampler's rounding on this CPU.
    torch.testing.assert_close(noise, torch.from_numpy(case["start_code"]), rtol=ULPS, atol=ULPS)
    c = model.encode_text([str(case["prompt"])])
    uc = model.encode_text([""])
    xs, x0s = [], []
    z = model.sample(noise, c, uc, steps=int(case["ddim_steps"]), guidance=float(case["scale"]),
                     hook=lambda i, n, x, x0: (xs.append(x.clone()), x0s.append(x0.clone())))
    close("x_steps", torch.stack(xs), case)
    close("pred_x0_steps", torch.stack(x0s), case)
    close("z", z, case)


def test_decoder_and_vocoder(model, case):
    mel = model.decode(torch.from_numpy(case["z"]))
    close("mel", mel, case)
    pre = []
    hook = model.vocoder.conv_post.register_forward_hook(lambda module, args, out: pre.append(out))
    try:
        wav = model.vocode(torch.from_numpy(case["mel"]))
    finally:
        hook.remove()
    close("wav_pre_tanh", pre[0], case)
    close("wav", wav, case)


def test_cli_generate_reproduces_the_official_clip(golden_weights, case, tmp_path):
    """The acceptance command: PCM16 WAV trimmed to the duration, no gain change."""
    import soundfile as sf

    out = tmp_path / "out.wav"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TAG_CONFIG=str(tmp_path / "none.toml"))
    command = ["tag", "generate", str(case["prompt"]), "-b", "make_an_audio", "-d", str(int(case["duration"])),
               "--seed", str(int(case["seed"])), "-O", f"steps={int(case['ddim_steps'])}",
               "-O", f"guidance={float(case['scale'])}", "-O", f"weights={golden_weights}", "--device", "cpu",
               "-o", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    samples, _ = sf.read(str(out), dtype="float32")
    frames = int(case["duration"]) * 16000
    assert samples.shape == (frames,)
    diff = np.abs(samples - case["wav"][:frames]).max()
    assert diff <= TOL["wav"] + 1 / 32768, f"wav from the CLI differs by {diff:.3g}"

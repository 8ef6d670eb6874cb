"""The Make-An-Audio v1 model: loading the official files onto a device, and its pipeline stages.

text (BERT + projection) -> guided sampling of the UNet in a 4 x 10 x W latent -> z / scale_factor -> VAE
decoder -> log10 mel (80 bins) -> BigVGAN -> 16 kHz waveform. Modules are built on the meta device and receive
the checkpoint tensors directly (`assign=True`), so loading allocates each weight once, on the target device.
"""
from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tagcore.errors import WeightsMissing

from . import checkpoint as ckpt
from . import convert
from .sampler import DDIMTables, EpsFn, Plan, StepHook, ddim_tables, make_plan
from .sampler import sample as run_loop
from .vocoder import accelerate

if TYPE_CHECKING:  # the model libraries load when weights do, not when the backend is listed
    from bigvgan import BigVGAN
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

MAX_TOKENS = 77
SAMPLE_RATE = 16000
LATENT_PER_SECOND = 7.8  # the official script's width rule: int(7.8 * seconds), rounded up to a multiple of 4
SAMPLES_PER_LATENT = 2048  # 8x VAE upsampling times BigVGAN's hop of 256


class Projection(nn.Module):
    """MS-CLAP's text projection: LayerNorm(e1 + Linear(gelu(e1))) with e1 = Linear(h), no biases."""

    def __init__(self, width: int, out: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(width, out, bias=False)
        self.linear2 = nn.Linear(out, out, bias=False)
        self.layer_norm = nn.LayerNorm(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.linear1(x)
        return self.layer_norm(e1 + self.linear2(nn.functional.gelu(e1)))


class TextEncoder(nn.Module):
    """BERT applied to all 77 token states (no attention mask, as in training), then the projection."""

    def __init__(self, bert_kwargs: dict[str, Any], out: int) -> None:
        super().__init__()
        from transformers import BertConfig, BertModel

        self.base = BertModel(BertConfig(**bert_kwargs), add_pooling_layer=False)
        self.projection = Projection(bert_kwargs["hidden_size"], out)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.projection(self.base(input_ids=input_ids).last_hidden_state)


def latent_width(duration: float) -> int:
    """Official latent width for `duration` s, widened by 4 columns when it would fall short of the duration.

    The official rule (int(7.8 d) rounded up to a multiple of 4) yields up to 40 ms less audio than asked for
    some lengths (15.5-21 s); those get the next multiple of 4 so the clip always covers the request.
    """
    width = -(-int(LATENT_PER_SECOND * duration) // 4) * 4
    while width * SAMPLES_PER_LATENT < round(duration * SAMPLE_RATE):
        width += 4
    return max(width, 4)


@dataclass
class MakeAnAudio:
    """Loaded modules plus the diffusion constants; every stage method runs under inference mode."""

    tokenizer: Any
    text_encoder: TextEncoder
    unet: UNet2DConditionModel  # or its torch.compile wrapper, which forwards every attribute (compiled.py)
    vae: AutoencoderKL
    vocoder: BigVGAN
    alphas_cumprod: torch.Tensor
    betas: torch.Tensor
    scale_factor: float
    device: torch.device
    dtype: torch.dtype
    vocoder_activations: str  # which BigVGAN activation path runs (vocoder.PATH_*), for result metadata

    # --- stages ------------------------------------------------------------------------------------------
    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(prompts), padding="max_length", max_length=MAX_TOKENS, truncation=True,
                              return_tensors="pt")["input_ids"]

    @torch.inference_mode()
    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """(len(prompts), 77, 1024) conditioning in the model dtype."""
        return self.text_encoder(self.tokenize(prompts).to(self.device))

    @torch.inference_mode()
    def unet_eps(self, x: torch.Tensor, t: int | torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Noise prediction for latents `x` at step `t` (an int, or a (1,) int64 tensor on the device; fp32 in/out)."""
        if isinstance(t, torch.Tensor):
            steps = t.expand(x.shape[0])
        else:
            steps = torch.full((x.shape[0],), t, device=self.device, dtype=torch.long)
        out = self.unet(x.to(self.device, self.dtype), steps, encoder_hidden_states=context.to(self.dtype),
                        return_dict=False)[0]
        return out.float()

    def guided_eps(self, c: torch.Tensor, uc: torch.Tensor, scale: float) -> EpsFn:
        """Classifier-free guidance with [uc; c] in one UNet call; the conditional branch alone when scale == 1."""
        if scale == 1.0:
            return lambda x, t: self.unet_eps(x, t, c)
        context = torch.cat([uc, c])

        def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            e_u, e_c = self.unet_eps(torch.cat([x, x]), t, context).chunk(2)
            return e_u + scale * (e_c - e_u)

        return eps

    def ddim_tables(self, steps: int) -> DDIMTables:
        return ddim_tables(self.alphas_cumprod, steps)

    def plan(self, sampler: str, steps: int) -> Plan:
        """The sampler's per-step tables on the model's device."""
        return make_plan(sampler, self.alphas_cumprod, self.betas, steps).to(self.device)

    @torch.inference_mode()
    def sample(self, noise: torch.Tensor, c: torch.Tensor, uc: torch.Tensor, *, steps: int, guidance: float,
               sampler: str = "ddim", hook: StepHook | None = None, chunk: int = 1) -> torch.Tensor:
        """Clean latents z (fp32) from start noise, eagerly; `uc` is the "" encoding broadcast to len(c) rows.

        `hook` runs after every `chunk` steps (graphs.py replays the same loop as CUDA graphs).
        """
        x = noise.to(self.device, torch.float32)
        return run_loop(x, self.guided_eps(c, uc, guidance), self.plan(sampler, steps), hook, chunk)

    @torch.inference_mode()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> log10 mel spectrogram (N, 1, n_mels, 8 W)."""
        z = (1.0 / self.scale_factor) * z.to(self.device, torch.float32)
        return self.vae.decode(z.to(self._vae_dtype), return_dict=False)[0].float()

    @torch.inference_mode()
    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        """Mel (N, 1, n_mels, frames) -> waveform (N, frames * hop) in [-1, 1]."""
        return self.vocoder(mel[:, 0].to(self._vocoder_dtype)).float()[:, 0]

    @property
    def _vae_dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    @property
    def _vocoder_dtype(self) -> torch.dtype:
        return next(self.vocoder.parameters()).dtype

    def latent_shape(self, n: int, width: int) -> tuple[int, int, int, int]:
        height = self.vocoder_mels // self.vae_factor
        return (n, self.latent_channels, height, width)

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config["in_channels"])

    @property
    def context_dim(self) -> int:
        return int(self.unet.config["cross_attention_dim"])

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae.config["block_out_channels"]) - 1)

    @property
    def vocoder_mels(self) -> int:
        return int(self.vocoder.h.num_mels)


# --- loading ------------------------------------------------------------------------------------------------
def _place(state: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Move floating tensors to the target device/dtype one at a time (no-op for fp32 CPU: stays memory mapped)."""
    return {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype) for k, v in state.items()}


def _assign(module: nn.Module, state: dict[str, torch.Tensor], path: Path, name: str, part: str) -> None:
    """Load `state` into a meta-device module, requiring an exact key match."""
    expected = set(module.state_dict())
    ckpt.require_keys(state, sorted(expected), path, name, part)
    unexpected = sorted(set(state) - expected)
    if unexpected:
        raise WeightsMissing(f"Make-An-Audio: {path} holds {part} weights this architecture does not use "
                             f"({', '.join(unexpected[:5])}); it is not a Make-An-Audio v1 checkpoint")
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:  # shape mismatches
        raise WeightsMissing(f"Make-An-Audio: {path} has {part} weights of the wrong shape: "
                             f"{str(exc).splitlines()[-1].strip()}") from None
    module.eval().requires_grad_(False)


def _text_encoder(sd: dict[str, torch.Tensor], path: Path, device: torch.device, dtype: torch.dtype) -> TextEncoder:
    text = convert.sub_state(sd, convert.TEXT_PREFIX)
    ckpt.require_keys(text, ("base.embeddings.word_embeddings.weight",) + ckpt.TEXT_PROJECTION_KEYS,
                      path, ckpt.LDM_FILE, "text encoder (cond_stage_model)")
    text = {k: v for k, v in text.items()
            if not k.startswith("base.pooler.") and not k.endswith(("position_ids", "token_type_ids"))}
    bert = convert.bert_config_kwargs(convert.sub_state(text, "base."))
    with torch.device("meta"):
        module = TextEncoder(bert, int(text["projection.linear1.weight"].shape[0]))
    embeddings = module.base.embeddings
    _assign(module, _place(text, device, dtype), path, ckpt.LDM_FILE, "text encoder (cond_stage_model)")
    # Non-persistent buffers are not in any checkpoint: rebuild them on the device.
    positions = torch.arange(bert["max_position_embeddings"], device=device).expand((1, -1))
    embeddings.position_ids = nn.Buffer(positions, persistent=False)
    embeddings.token_type_ids = nn.Buffer(torch.zeros_like(positions), persistent=False)
    return module


def _stage_weights(sd: dict[str, torch.Tensor], prefix: str, path: Path, label: str) -> dict[str, torch.Tensor]:
    """The official weights of one stage (keys under `prefix`, prefix removed); refuse a checkpoint without them."""
    official = convert.sub_state(sd, prefix)
    if not official:
        raise WeightsMissing(f"Make-An-Audio: {path} holds no {label} weights ({prefix}*); "
                             f"get the official file: {ckpt.HOW_TO_GET[ckpt.LDM_FILE]}")
    return official


def _unet(sd: dict[str, torch.Tensor], path: Path, device: torch.device, dtype: torch.dtype) -> UNet2DConditionModel:
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    official = _stage_weights(sd, convert.UNET_PREFIX, path, "UNet")
    config = convert.unet_config(official)
    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
    _assign(unet, _place(convert.unet_keys(official, config), device, dtype), path, ckpt.LDM_FILE,
            "UNet (model.diffusion_model)")
    return unet


def _vae(sd: dict[str, torch.Tensor], path: Path, device: torch.device, dtype: torch.dtype) -> AutoencoderKL:
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

    official = _stage_weights(sd, convert.VAE_PREFIX, path, "VAE")
    official = {k: v for k, v in official.items() if not k.startswith("loss.")}
    config = convert.vae_config(official)
    with torch.device("meta"):
        vae = AutoencoderKL(**config)
    _assign(vae, _place(convert.vae_keys(official, config), device, dtype), path, ckpt.LDM_FILE,
            "VAE (first_stage_model)")
    return vae


def load_vocoder(layout: ckpt.Layout, device: torch.device) -> tuple[BigVGAN, str]:
    """BigVGAN with its weight norm folded and its fastest exact activation path; returns (module, path)."""
    import yaml
    from bigvgan import BigVGAN
    from bigvgan.env import AttrDict

    args_path = layout.require(ckpt.VOCODER_ARGS)
    weights_path = layout.require(ckpt.VOCODER_FILE)
    try:
        args = yaml.safe_load(args_path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise WeightsMissing(f"Make-An-Audio: {args_path} is not valid YAML ({exc}); "
                             f"{ckpt.HOW_TO_GET[ckpt.VOCODER_ARGS]}") from None
    needed = ("num_mels", "upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel", "resblock",
              "resblock_kernel_sizes", "resblock_dilation_sizes", "activation", "snake_logscale")
    if not isinstance(args, dict) or any(k not in args for k in needed):
        lacking = [k for k in needed if not isinstance(args, dict) or k not in args]
        raise WeightsMissing(f"Make-An-Audio: {args_path} lacks {', '.join(lacking)}; "
                             f"{ckpt.HOW_TO_GET[ckpt.VOCODER_ARGS]}")
    state = ckpt.load_state_dict(weights_path, "generator", ckpt.VOCODER_FILE)
    with torch.device("meta"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*weight_norm.*deprecated", category=FutureWarning)
        vocoder = BigVGAN(AttrDict(args), use_cuda_kernel=False)
    _assign(vocoder, _place(state, device, torch.float32), weights_path, ckpt.VOCODER_FILE, "BigVGAN")
    with contextlib.redirect_stdout(io.StringIO()):  # bigvgan prints while folding the weight norm
        vocoder.remove_weight_norm()
    activations = accelerate(vocoder, device)
    return vocoder.requires_grad_(False), activations


def _tokenizer(layout: ckpt.Layout) -> Any:
    from transformers.models.bert.tokenization_bert import BertTokenizerFast

    vocab = layout.require(ckpt.VOCAB_FILE)
    try:  # a local folder: from_pretrained reads vocab.txt and never touches the network
        return BertTokenizerFast.from_pretrained(str(vocab.parent), do_lower_case=True)
    except Exception as exc:  # tokenizers raises its own exception types for a malformed vocab
        raise WeightsMissing(f"Make-An-Audio: {vocab} is not a usable WordPiece vocabulary ({exc}); "
                             f"{ckpt.HOW_TO_GET[ckpt.VOCAB_FILE]}") from None


def load(root: Path, device: torch.device, dtype: torch.dtype) -> MakeAnAudio:
    """Read the official weights folder onto `device`.

    The UNet and text encoder run in `dtype`; the VAE and vocoder always run in fp32 (they are cheap, and
    half-precision rounding in the waveform path is audible / overflows in fp16).
    """
    layout = ckpt.Layout(root)
    layout.require_all()
    tokenizer = _tokenizer(layout)
    ldm_path = layout.require(ckpt.LDM_FILE)
    vocoder, activations = load_vocoder(layout, device)
    sd = ckpt.load_state_dict(ldm_path, "state_dict", ckpt.LDM_FILE)
    ckpt.require_keys(sd, ckpt.SCHEDULE_KEYS + ("betas",), ldm_path, ckpt.LDM_FILE, "diffusion schedule")
    try:
        text = _text_encoder(sd, ldm_path, device, dtype)
        unet = _unet(sd, ldm_path, device, dtype)
        vae = _vae(sd, ldm_path, device, torch.float32)
    except convert.ConversionError as exc:
        raise WeightsMissing(f"Make-An-Audio: {ldm_path} does not match the Make-An-Audio architecture ({exc}); "
                             f"{ckpt.HOW_TO_GET[ckpt.LDM_FILE]}") from None
    model = MakeAnAudio(
        tokenizer=tokenizer, text_encoder=text, unet=unet, vae=vae, vocoder=vocoder,
        alphas_cumprod=sd["alphas_cumprod"].detach().to("cpu", torch.float32).clone(),
        betas=sd["betas"].detach().to("cpu", torch.float64).clone(),
        scale_factor=float(sd["scale_factor"]), device=device, dtype=dtype, vocoder_activations=activations,
    )
    del sd
    hop = math.prod(vocoder.h.upsample_rates)
    if hop * model.vae_factor != SAMPLES_PER_LATENT:
        raise WeightsMissing(f"Make-An-Audio: {layout.path(ckpt.VOCODER_ARGS)} upsamples by {hop}, but this model "
                             f"needs {SAMPLES_PER_LATENT // model.vae_factor} (16 kHz audio, 256-sample mel hop)")
    if model.vocoder_mels % model.vae_factor or model.vae.config["out_channels"] != 1:
        raise WeightsMissing(f"Make-An-Audio: {layout.path(ckpt.VOCODER_ARGS)} expects {model.vocoder_mels} mel "
                             f"bins, which the VAE of {ldm_path} does not produce")
    return model

"""Official Make-An-Audio (LDM) state-dict keys -> the modules we run, and the architecture read from shapes.

The official checkpoint uses the CompVis LDM names (`model.diffusion_model.input_blocks.1.0.in_layers.2.weight`,
`first_stage_model.decoder.up.3.attn.0.q.weight`, ...). We run diffusers' `UNet2DConditionModel` and
`AutoencoderKL`, which compute the same functions under other names. This module renames the keys and infers
every width/depth from tensor shapes, so the same loader serves the full-size release and small test models.
Hyper-parameters that shapes cannot reveal are constants of the Make-An-Audio architecture (8 attention heads
in the UNet, 32 norm groups, BERT head size 64).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.caption_encoder."
UNET_HEADS = 8
BERT_HEAD_SIZE = 64

_RESNET_UNET = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
                "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
_RESNET_VAE = {"nin_shortcut": "conv_shortcut"}
_ATTN_VAE = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


class ConversionError(ValueError):
    """The checkpoint's keys or shapes do not describe a Make-An-Audio model."""


def sub_state(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under `prefix`, with the prefix removed (views, no copies)."""
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _rename(rest: str, table: Mapping[str, str]) -> str:
    for old, new in table.items():
        if rest == old or rest.startswith(old + "."):
            return new + rest[len(old):]
    return rest


def _indices(keys: list[str], pattern: str) -> list[int]:
    found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    return sorted(found)


# --- UNet ---------------------------------------------------------------------------------------------------
def unet_config(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """diffusers `UNet2DConditionModel` arguments equivalent to the official UNet whose weights are `sd`."""
    keys = list(sd)
    try:
        conv_in = sd["input_blocks.0.0.weight"]
        out_channels = sd["out.2.weight"].shape[0]
    except KeyError as exc:
        raise ConversionError(f"UNet weights lack {exc.args[0]}") from None
    downsamples = _indices(keys, r"input_blocks\.(\d+)\.0\.op\.weight")
    blocks = _indices(keys, r"input_blocks\.(\d+)\.")
    levels = len(downsamples) + 1
    per_level = (len(blocks) - 1 - len(downsamples)) // levels
    if per_level < 1 or 1 + levels * per_level + len(downsamples) != len(blocks):
        raise ConversionError("UNet input blocks do not form levels of equal depth")
    channels, attention = [], []
    for level in range(levels):
        first = 1 + level * (per_level + 1)
        channels.append(int(sd[f"input_blocks.{first}.0.in_layers.2.weight"].shape[0]))
        attention.append(f"input_blocks.{first}.1.proj_in.weight" in sd)
    context = [v.shape[1] for k, v in sd.items() if k.endswith("attn2.to_k.weight")]
    depth = _indices(keys, r"input_blocks\.1\.1\.transformer_blocks\.(\d+)\.")
    linear_proj = any(k.endswith("proj_in.weight") and v.ndim == 2 for k, v in sd.items())
    return dict(
        sample_size=None,
        in_channels=int(conv_in.shape[1]),
        out_channels=int(out_channels),
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=tuple(channels),
        layers_per_block=per_level,
        cross_attention_dim=int(context[0]) if context else 1024,
        attention_head_dim=UNET_HEADS,
        transformer_layers_per_block=max(1, len(depth)),
        use_linear_projection=linear_proj,
        flip_sin_to_cos=True,
        freq_shift=0,
        norm_num_groups=32,
    )


def unet_keys(sd: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Rename official UNet keys (prefix already removed) to diffusers' names."""
    per = config["layers_per_block"]
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        out[_unet_key(key, per)] = value
    return out


def _unet_key(key: str, per: int) -> str:
    fixed = {"time_embed.0": "time_embedding.linear_1", "time_embed.2": "time_embedding.linear_2",
             "input_blocks.0.0": "conv_in", "out.0": "conv_norm_out", "out.2": "conv_out"}
    for old, new in fixed.items():
        if key.startswith(old + "."):
            return new + key[len(old):]
    if m := re.match(r"input_blocks\.(\d+)\.(\d+)\.(.*)", key):
        block, part, rest = int(m.group(1)), int(m.group(2)), m.group(3)
        level, slot = divmod(block - 1, per + 1)
        if slot == per:  # the level's downsampler: input_blocks.k.0.op
            return f"down_blocks.{level}.downsamplers.0.conv" + rest[len("op"):]
        if part == 0:
            return f"down_blocks.{level}.resnets.{slot}.{_rename(rest, _RESNET_UNET)}"
        return f"down_blocks.{level}.attentions.{slot}.{rest}"
    if m := re.match(r"middle_block\.(\d+)\.(.*)", key):
        part, rest = int(m.group(1)), m.group(2)
        if part == 1:
            return f"mid_block.attentions.0.{rest}"
        return f"mid_block.resnets.{part // 2}.{_rename(rest, _RESNET_UNET)}"
    if m := re.match(r"output_blocks\.(\d+)\.(\d+)\.(.*)", key):
        block, part, rest = int(m.group(1)), int(m.group(2)), m.group(3)
        level, slot = divmod(block, per + 1)
        if part == 0:
            return f"up_blocks.{level}.resnets.{slot}.{_rename(rest, _RESNET_UNET)}"
        if rest.startswith("conv."):  # Upsample: output_blocks.k.{1|2}.conv
            return f"up_blocks.{level}.upsamplers.0.{rest}"
        return f"up_blocks.{level}.attentions.{slot}.{rest}"
    raise ConversionError(f"unexpected UNet key {key!r}")


# --- VAE ----------------------------------------------------------------------------------------------------
def vae_config(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """diffusers `AutoencoderKL` arguments equivalent to the official spectrogram VAE whose weights are `sd`."""
    keys = list(sd)
    try:
        conv_in = sd["encoder.conv_in.weight"]
        latent = int(sd["post_quant_conv.weight"].shape[0])
        z_channels = int(sd["decoder.conv_in.weight"].shape[1])
    except KeyError as exc:
        raise ConversionError(f"VAE weights lack {exc.args[0]}") from None
    if latent != z_channels:
        raise ConversionError(f"VAE embed_dim {latent} differs from z_channels {z_channels}; not supported")
    levels = _indices(keys, r"encoder\.down\.(\d+)\.")
    if not levels:
        raise ConversionError("VAE encoder has no down levels")
    channels = [int(sd[f"encoder.down.{i}.block.0.conv1.weight"].shape[0]) for i in levels]
    per_level = len(_indices(keys, r"encoder\.down\.0\.block\.(\d+)\."))
    attention = [f"encoder.down.{i}.attn.0.q.weight" in sd for i in levels]
    return dict(
        in_channels=int(conv_in.shape[1]),
        out_channels=int(sd["decoder.conv_out.weight"].shape[0]),
        down_block_types=tuple("AttnDownEncoderBlock2D" if a else "DownEncoderBlock2D" for a in attention),
        up_block_types=tuple("AttnUpDecoderBlock2D" if a else "UpDecoderBlock2D" for a in reversed(attention)),
        block_out_channels=tuple(channels),
        layers_per_block=per_level,
        latent_channels=latent,
        norm_num_groups=32,
        force_upcast=False,
    )


def vae_keys(sd: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Rename official VAE keys (prefix removed) to diffusers' names; 1x1-conv attention weights become linear."""
    levels = len(config["block_out_channels"])
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        new, squeeze = _vae_key(key, levels)
        out[new] = value.reshape(value.shape[:2]) if squeeze and value.ndim == 4 else value
    return out


def _vae_key(key: str, levels: int) -> tuple[str, bool]:
    if key.startswith(("quant_conv.", "post_quant_conv.")):
        return key, False
    side, _, rest = key.partition(".")
    if side not in ("encoder", "decoder"):
        raise ConversionError(f"unexpected VAE key {key!r}")
    fixed = {"norm_out": "conv_norm_out", "conv_in": "conv_in", "conv_out": "conv_out"}
    for old, new in fixed.items():
        if rest.startswith(old + "."):
            return f"{side}.{new}{rest[len(old):]}", False
    if m := re.match(r"mid\.(block_1|block_2|attn_1)\.(.*)", rest):
        part, tail = m.group(1), m.group(2)
        if part == "attn_1":
            return f"{side}.mid_block.attentions.0.{_rename(tail, _ATTN_VAE)}", True
        return f"{side}.mid_block.resnets.{int(part[-1]) - 1}.{_rename(tail, _RESNET_VAE)}", False
    if m := re.match(r"(down|up)\.(\d+)\.(block|attn|downsample|upsample)\.(.*)", rest):
        level = int(m.group(2))
        if m.group(1) == "up":  # the official decoder counts levels from the finest; diffusers from the coarsest
            level = levels - 1 - level
        blocks = "down_blocks" if m.group(1) == "down" else "up_blocks"
        kind, tail = m.group(3), m.group(4)
        if kind == "block":
            slot, _, tail = tail.partition(".")
            return f"{side}.{blocks}.{level}.resnets.{slot}.{_rename(tail, _RESNET_VAE)}", False
        if kind == "attn":
            slot, _, tail = tail.partition(".")
            return f"{side}.{blocks}.{level}.attentions.{slot}.{_rename(tail, _ATTN_VAE)}", True
        sampler = "downsamplers" if kind == "downsample" else "upsamplers"
        return f"{side}.{blocks}.{level}.{sampler}.0.{tail}", False
    raise ConversionError(f"unexpected VAE key {key!r}")


# --- text encoder -------------------------------------------------------------------------------------------
def bert_config_kwargs(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """`transformers.BertConfig` arguments for the BERT weights `sd` (prefix `base.` removed)."""
    try:
        words = sd["embeddings.word_embeddings.weight"]
        positions = sd["embeddings.position_embeddings.weight"]
        types = sd["embeddings.token_type_embeddings.weight"]
        intermediate = sd["encoder.layer.0.intermediate.dense.weight"]
    except KeyError as exc:
        raise ConversionError(f"BERT weights lack {exc.args[0]}") from None
    hidden = int(words.shape[1])
    return dict(
        vocab_size=int(words.shape[0]),
        hidden_size=hidden,
        num_hidden_layers=len(_indices(list(sd), r"encoder\.layer\.(\d+)\.")),
        num_attention_heads=max(1, hidden // BERT_HEAD_SIZE),
        intermediate_size=int(intermediate.shape[0]),
        max_position_embeddings=int(positions.shape[0]),
        type_vocab_size=int(types.shape[0]),
    )

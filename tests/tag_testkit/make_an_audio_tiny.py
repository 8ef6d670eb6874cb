"""Writers of Make-An-Audio weights folders in the OFFICIAL on-disk layout, at any width.

`ldm_shapes` lists the official state-dict keys (CompVis LDM / openaimodel names) and shapes for a given
architecture, written from the official model structure; with the full-size settings it must reproduce the
official key manifest exactly (tested when ../shared is present), so a tiny folder exercises the same loader
paths as the real 1.36 GB checkpoint.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

Shapes = dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class Arch:
    unet_channels: int = 32
    unet_mult: tuple[int, ...] = (1, 2)
    unet_blocks: int = 2
    context: int = 64
    vae_channels: int = 32
    vae_mult: tuple[int, ...] = (1, 2, 2, 4)
    vae_blocks: int = 2
    vae_attn_levels: tuple[int, ...] = (2, 3)
    latent: int = 4
    bert_hidden: int = 32
    bert_layers: int = 2
    bert_intermediate: int = 64
    bert_positions: int = 128
    vocab_size: int = 0  # 0: the size of the vocab written with the folder
    vocoder_channels: int = 64
    vocoder_kernels: tuple[int, ...] = (3,)


FULL = Arch(unet_channels=320, context=1024, vae_channels=128, bert_hidden=768, bert_layers=12,
            bert_intermediate=3072, bert_positions=512, vocab_size=30522, vocoder_channels=1536,
            vocoder_kernels=(3, 7, 11))
TINY = Arch()
TINY_WORDS = ["a", "bird", "chirps", "dog", "barks", "rain", "on", "roof", "engine", "the", "##s", "##ing"]


def _resnet(out: Shapes, p: str, cin: int, cout: int, emb: int | None) -> None:
    if emb is None:  # VAE resnet
        out.update({f"{p}norm1.weight": (cin,), f"{p}norm1.bias": (cin,), f"{p}conv1.weight": (cout, cin, 3, 3),
                    f"{p}conv1.bias": (cout,), f"{p}norm2.weight": (cout,), f"{p}norm2.bias": (cout,),
                    f"{p}conv2.weight": (cout, cout, 3, 3), f"{p}conv2.bias": (cout,)})
        if cin != cout:
            out.update({f"{p}nin_shortcut.weight": (cout, cin, 1, 1), f"{p}nin_shortcut.bias": (cout,)})
        return
    out.update({f"{p}in_layers.0.weight": (cin,), f"{p}in_layers.0.bias": (cin,),
                f"{p}in_layers.2.weight": (cout, cin, 3, 3), f"{p}in_layers.2.bias": (cout,),
                f"{p}emb_layers.1.weight": (cout, emb), f"{p}emb_layers.1.bias": (cout,),
                f"{p}out_layers.0.weight": (cout,), f"{p}out_layers.0.bias": (cout,),
                f"{p}out_layers.3.weight": (cout, cout, 3, 3), f"{p}out_layers.3.bias": (cout,)})
    if cin != cout:
        out.update({f"{p}skip_connection.weight": (cout, cin, 1, 1), f"{p}skip_connection.bias": (cout,)})


def _transformer(out: Shapes, p: str, ch: int, ctx: int) -> None:
    b = f"{p}transformer_blocks.0."
    out.update({f"{p}norm.weight": (ch,), f"{p}norm.bias": (ch,), f"{p}proj_in.weight": (ch, ch, 1, 1),
                f"{p}proj_in.bias": (ch,), f"{p}proj_out.weight": (ch, ch, 1, 1), f"{p}proj_out.bias": (ch,),
                f"{b}ff.net.0.proj.weight": (8 * ch, ch), f"{b}ff.net.0.proj.bias": (8 * ch,),
                f"{b}ff.net.2.weight": (ch, 4 * ch), f"{b}ff.net.2.bias": (ch,)})
    for attn, kv in (("attn1", ch), ("attn2", ctx)):
        out.update({f"{b}{attn}.to_q.weight": (ch, ch), f"{b}{attn}.to_k.weight": (ch, kv),
                    f"{b}{attn}.to_v.weight": (ch, kv), f"{b}{attn}.to_out.0.weight": (ch, ch),
                    f"{b}{attn}.to_out.0.bias": (ch,)})
    for n in (1, 2, 3):
        out.update({f"{b}norm{n}.weight": (ch,), f"{b}norm{n}.bias": (ch,)})


def _vae_attn(out: Shapes, p: str, ch: int) -> None:
    out.update({f"{p}norm.weight": (ch,), f"{p}norm.bias": (ch,)})
    for n in ("q", "k", "v", "proj_out"):
        out.update({f"{p}{n}.weight": (ch, ch, 1, 1), f"{p}{n}.bias": (ch,)})


def unet_shapes(a: Arch) -> Shapes:
    out: Shapes = {}
    p, mc, emb = "model.diffusion_model.", a.unet_channels, 4 * a.unet_channels
    out.update({f"{p}time_embed.0.weight": (emb, mc), f"{p}time_embed.0.bias": (emb,),
                f"{p}time_embed.2.weight": (emb, emb), f"{p}time_embed.2.bias": (emb,),
                f"{p}input_blocks.0.0.weight": (mc, a.latent, 3, 3), f"{p}input_blocks.0.0.bias": (mc,)})
    ch, chans, b = mc, [mc], 1
    for level, mult in enumerate(a.unet_mult):
        for _ in range(a.unet_blocks):
            _resnet(out, f"{p}input_blocks.{b}.0.", ch, mult * mc, emb)
            ch = mult * mc
            _transformer(out, f"{p}input_blocks.{b}.1.", ch, a.context)
            chans.append(ch)
            b += 1
        if level != len(a.unet_mult) - 1:
            out.update({f"{p}input_blocks.{b}.0.op.weight": (ch, ch, 3, 3), f"{p}input_blocks.{b}.0.op.bias": (ch,)})
            chans.append(ch)
            b += 1
    _resnet(out, f"{p}middle_block.0.", ch, ch, emb)
    _transformer(out, f"{p}middle_block.1.", ch, a.context)
    _resnet(out, f"{p}middle_block.2.", ch, ch, emb)
    b = 0
    for level, mult in reversed(list(enumerate(a.unet_mult))):
        for i in range(a.unet_blocks + 1):
            skip = chans.pop()
            _resnet(out, f"{p}output_blocks.{b}.0.", ch + skip, mc * mult, emb)
            ch = mc * mult
            _transformer(out, f"{p}output_blocks.{b}.1.", ch, a.context)
            if level and i == a.unet_blocks:
                out.update({f"{p}output_blocks.{b}.2.conv.weight": (ch, ch, 3, 3),
                            f"{p}output_blocks.{b}.2.conv.bias": (ch,)})
            b += 1
    out.update({f"{p}out.0.weight": (mc,), f"{p}out.0.bias": (mc,), f"{p}out.2.weight": (a.latent, mc, 3, 3),
                f"{p}out.2.bias": (a.latent,)})
    return out


def vae_shapes(a: Arch) -> Shapes:
    out: Shapes = {}
    p, ch, levels = "first_stage_model.", a.vae_channels, len(a.vae_mult)
    in_mult = (1,) + a.vae_mult
    out.update({f"{p}encoder.conv_in.weight": (ch, 1, 3, 3), f"{p}encoder.conv_in.bias": (ch,)})
    for i in range(levels):
        block_in, block_out = ch * in_mult[i], ch * a.vae_mult[i]
        for j in range(a.vae_blocks):
            _resnet(out, f"{p}encoder.down.{i}.block.{j}.", block_in, block_out, None)
            block_in = block_out
            if i in a.vae_attn_levels:
                _vae_attn(out, f"{p}encoder.down.{i}.attn.{j}.", block_in)
        if i != levels - 1:
            out.update({f"{p}encoder.down.{i}.downsample.conv.weight": (block_in, block_in, 3, 3),
                        f"{p}encoder.down.{i}.downsample.conv.bias": (block_in,)})
    for side in ("encoder", "decoder"):
        c = ch * a.vae_mult[-1]
        _resnet(out, f"{p}{side}.mid.block_1.", c, c, None)
        _vae_attn(out, f"{p}{side}.mid.attn_1.", c)
        _resnet(out, f"{p}{side}.mid.block_2.", c, c, None)
    out.update({f"{p}encoder.norm_out.weight": (block_in,), f"{p}encoder.norm_out.bias": (block_in,),
                f"{p}encoder.conv_out.weight": (2 * a.latent, block_in, 3, 3),
                f"{p}encoder.conv_out.bias": (2 * a.latent,)})
    block_in = ch * a.vae_mult[-1]
    out.update({f"{p}decoder.conv_in.weight": (block_in, a.latent, 3, 3), f"{p}decoder.conv_in.bias": (block_in,)})
    for i in reversed(range(levels)):
        block_out = ch * a.vae_mult[i]
        for j in range(a.vae_blocks + 1):
            _resnet(out, f"{p}decoder.up.{i}.block.{j}.", block_in, block_out, None)
            block_in = block_out
            if i in a.vae_attn_levels:
                _vae_attn(out, f"{p}decoder.up.{i}.attn.{j}.", block_in)
        if i != 0:
            out.update({f"{p}decoder.up.{i}.upsample.conv.weight": (block_in, block_in, 3, 3),
                        f"{p}decoder.up.{i}.upsample.conv.bias": (block_in,)})
    out.update({f"{p}decoder.norm_out.weight": (block_in,), f"{p}decoder.norm_out.bias": (block_in,),
                f"{p}decoder.conv_out.weight": (1, block_in, 3, 3), f"{p}decoder.conv_out.bias": (1,),
                f"{p}quant_conv.weight": (2 * a.latent, 2 * a.latent, 1, 1), f"{p}quant_conv.bias": (2 * a.latent,),
                f"{p}post_quant_conv.weight": (a.latent, a.latent, 1, 1), f"{p}post_quant_conv.bias": (a.latent,)})
    return out


def text_shapes(a: Arch, vocab_size: int) -> Shapes:
    p, h = "cond_stage_model.caption_encoder.", a.bert_hidden
    out: Shapes = {f"{p}base.embeddings.word_embeddings.weight": (vocab_size, h),
                   f"{p}base.embeddings.position_embeddings.weight": (a.bert_positions, h),
                   f"{p}base.embeddings.token_type_embeddings.weight": (2, h),
                   f"{p}base.embeddings.LayerNorm.weight": (h,), f"{p}base.embeddings.LayerNorm.bias": (h,)}
    for layer in range(a.bert_layers):
        q = f"{p}base.encoder.layer.{layer}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            out.update({f"{q}{name}.weight": (h, h), f"{q}{name}.bias": (h,)})
        out.update({f"{q}attention.output.LayerNorm.weight": (h,), f"{q}attention.output.LayerNorm.bias": (h,),
                    f"{q}intermediate.dense.weight": (a.bert_intermediate, h),
                    f"{q}intermediate.dense.bias": (a.bert_intermediate,),
                    f"{q}output.dense.weight": (h, a.bert_intermediate), f"{q}output.dense.bias": (h,),
                    f"{q}output.LayerNorm.weight": (h,), f"{q}output.LayerNorm.bias": (h,)})
    out.update({f"{p}base.pooler.dense.weight": (h, h), f"{p}base.pooler.dense.bias": (h,),
                f"{p}projection.linear1.weight": (a.context, h), f"{p}projection.linear2.weight": (a.context, a.context),
                f"{p}projection.layer_norm.weight": (a.context,), f"{p}projection.layer_norm.bias": (a.context,)})
    return out


def schedule() -> dict[str, torch.Tensor]:
    """The linear schedule buffers of the official LDM (T=1000, 0.00085..0.012), float32."""
    b = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    ac = torch.cumprod(1.0 - b, 0)
    acp = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    s = dict(betas=b, alphas_cumprod=ac, alphas_cumprod_prev=acp, sqrt_alphas_cumprod=ac.sqrt(),
             sqrt_one_minus_alphas_cumprod=(1 - ac).sqrt(), log_one_minus_alphas_cumprod=(1 - ac).log(),
             sqrt_recip_alphas_cumprod=(1 / ac).sqrt(), sqrt_recipm1_alphas_cumprod=(1 / ac - 1).sqrt(),
             posterior_variance=b * (1 - acp) / (1 - ac))
    s.update(posterior_log_variance_clipped=s["posterior_variance"].clamp(min=1e-20).log(),
             posterior_mean_coef1=b * acp.sqrt() / (1 - ac), posterior_mean_coef2=(1 - acp) * (1 - b).sqrt() / (1 - ac))
    return {k: v.float() for k, v in s.items()}


def ldm_shapes(a: Arch, vocab_size: int) -> Shapes:
    out = {k: tuple(v.shape) for k, v in schedule().items()}
    out["scale_factor"] = ()
    return out | unet_shapes(a) | vae_shapes(a) | text_shapes(a, vocab_size)


def vocoder_args(a: Arch) -> dict:
    return {"resblock": "1", "num_mels": 80, "upsample_rates": [4, 4, 2, 2, 2, 2],
            "upsample_kernel_sizes": [8, 8, 4, 4, 4, 4], "upsample_initial_channel": a.vocoder_channels,
            "resblock_kernel_sizes": list(a.vocoder_kernels),
            "resblock_dilation_sizes": [[1, 3, 5] for _ in a.vocoder_kernels],
            "activation": "snakebeta", "snake_logscale": True}


def value(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A deterministic weight for `key` (same scaling rule as the golden derivation)."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(zlib.crc32(key.encode())))
    if len(shape) > 1:
        return x / math.sqrt(math.prod(shape[1:]))
    if key.endswith(".weight"):
        return 1 + 0.1 * x
    return 0.05 * x


def vocoder_state(a: Arch) -> dict[str, torch.Tensor]:
    """BigVGAN generator weights under the official (old weight-norm) key names, anti-alias filters real."""
    from bigvgan import BigVGAN
    from bigvgan.env import AttrDict

    template = BigVGAN(AttrDict(vocoder_args(a))).state_dict()
    return {k: v.clone() if k.endswith(".filter") else 0.1 * value(k, tuple(v.shape)) if k.endswith((".alpha", ".beta"))
            else value(k, tuple(v.shape)) for k, v in template.items()}


def write_folder(root: Path, a: Arch = TINY, words: list[str] = TINY_WORDS) -> Path:
    """Write maa1_full.ckpt, bigvgan/{args.yml,best_netG.pt} and bert-base-uncased/vocab.txt under `root`."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    (root / "bigvgan").mkdir(parents=True, exist_ok=True)
    (root / "bert-base-uncased").mkdir(parents=True, exist_ok=True)
    (root / "bert-base-uncased" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    consts = schedule() | {"scale_factor": torch.tensor(0.8)}
    sd = {k: consts[k] if k in consts else value(k, s) for k, s in ldm_shapes(a, a.vocab_size or len(vocab)).items()}
    torch.save({"state_dict": sd}, root / "maa1_full.ckpt")
    torch.save({"generator": vocoder_state(a)}, root / "bigvgan" / "best_netG.pt")
    (root / "bigvgan" / "args.yml").write_text(yaml.safe_dump(vocoder_args(a)))
    return root

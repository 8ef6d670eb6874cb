"""audiocraft's LM transformer as one function over a preallocated key/value cache.

Why: audiocraft's streaming transformer grows every layer's cache with `torch.cat` and goes through
`nn.MultiheadAttention`, einops and several module wrappers per layer and step, so a token step costs hundreds of
small launches from Python whatever the batch. Here the same weights (read from the loaded `LMModel`, no copy, no
new checkpoint format) run as a few plain tensor ops per layer on a cache sized for the whole window: the keys
and values of step p are written at position p, attention reads the cache through a mask, and the cross-attention
keys/values of the text are computed once per request. The shapes are static, so a CUDA graph can replay a step.

The arithmetic is audiocraft's (pre-norm layers, sinusoidal positions, scaled dot-product attention, the model's
own activation and layer scales); `unsupported_features` names the architecture options this function does not
implement, so such a model is refused instead of decoded wrongly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F


def unsupported_features(lm: Any) -> list[str]:
    """What this decoder does not implement in `lm` (an audiocraft `LMModel`); empty when it can decode it."""
    problems: list[str] = []
    transformer = lm.transformer
    if transformer.positional_embedding != "sin":
        problems.append(f"positional embedding {transformer.positional_embedding!r} (only 'sin')")
    for name in ("sum", "prepend", "input_interpolate"):
        if lm.fuser.fuse2cond.get(name):
            problems.append(f"conditions fused by {name!r} ({', '.join(lm.fuser.fuse2cond[name])})")
    if lm.two_step_cfg:
        problems.append("two-step classifier-free guidance")
    layer = transformer.layers[0]
    attention = layer.self_attn
    if not layer.norm_first:
        problems.append("post-norm layers")
    if attention.past_context is not None:
        problems.append("a finite attention context (past_context)")
    if attention.kv_repeat != 1 or attention.qk_layer_norm or attention.rope is not None:
        problems.append("grouped keys, query/key layer norm or rotary embeddings")
    if layer.cross_attention is not None and layer.cross_attention.qk_layer_norm:
        problems.append("query/key layer norm in cross-attention")
    return problems


def _attention_weights(attention: Any) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """(in_proj weight, in_proj bias, out_proj weight, out_proj bias) of a StreamingMultiheadAttention, whichever
    implementation it wraps (audiocraft's custom one or torch's nn.MultiheadAttention: same packed layout)."""
    owner = attention if attention.custom else attention.mha
    return owner.in_proj_weight, owner.in_proj_bias, owner.out_proj.weight, owner.out_proj.bias


def _norm(module: Any) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    return module.weight, module.bias, module.eps


def _scale(module: Any) -> torch.Tensor | None:
    """A LayerScale's vector, or None for the identity audiocraft uses when layer scale is off."""
    return getattr(module, "scale", None)


def _split3(tensor: torch.Tensor | None) -> tuple[Any, Any, Any]:
    if tensor is None:
        return None, None, None
    first, second, third = tensor.chunk(3)
    return first, second, third


@dataclass(frozen=True)
class _Cross:
    """One layer's cross-attention tensors (weight, bias pairs)."""

    norm: tuple
    q: tuple
    k: tuple
    v: tuple
    out: tuple
    scale: torch.Tensor | None


@dataclass(frozen=True)
class _Layer:
    """One transformer layer's tensors, views of the loaded model's parameters."""

    norm1: tuple
    qkv: tuple
    out: tuple
    scale1: torch.Tensor | None
    cross: _Cross | None
    """The text cross-attention (None in a model without text conditioning)."""
    norm2: tuple
    ff1: tuple
    ff2: tuple
    scale2: torch.Tensor | None
    activation: Any
    float32_attention: bool


def _layer(layer: Any) -> _Layer:
    w_in, b_in, w_out, b_out = _attention_weights(layer.self_attn)
    cross = layer.cross_attention
    tensors = None
    if cross is not None:
        cw_in, cb_in, cw_out, cb_out = _attention_weights(cross)
        (wq, wk, wv), (bq, bk, bv) = cw_in.chunk(3), _split3(cb_in)
        tensors = _Cross(norm=_norm(layer.norm_cross), q=(wq, bq), k=(wk, bk), v=(wv, bv), out=(cw_out, cb_out),
                         scale=_scale(layer.layer_scale_cross))
    return _Layer(norm1=_norm(layer.norm1), qkv=(w_in, b_in), out=(w_out, b_out),
                  scale1=_scale(layer.layer_scale_1), norm2=_norm(layer.norm2),
                  ff1=(layer.linear1.weight, layer.linear1.bias), ff2=(layer.linear2.weight, layer.linear2.bias),
                  scale2=_scale(layer.layer_scale_2), activation=layer.activation,
                  float32_attention=bool(layer.self_attn.attention_as_float32), cross=tensors)


def _residual(x: torch.Tensor, update: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    return x + (update if scale is None else scale * update)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
            float32: bool) -> torch.Tensor:
    """Scaled dot-product attention on [rows, heads, time, head_dim]; back to [rows, time, dim]."""
    dtype = q.dtype
    if float32:
        q, k, v = q.float(), k.float(), v.float()
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).to(dtype)
    rows, heads, time, head_dim = out.shape
    return out.transpose(1, 2).reshape(rows, time, heads * head_dim)


@dataclass
class KVCache:
    """Keys/values of every layer for `rows` sequences of up to `length` positions, plus the text's
    cross-attention keys/values (`cross_mask`: which of those keys are real, None when all are)."""

    keys: torch.Tensor
    """[layers, rows, heads, length, head_dim]"""
    values: torch.Tensor
    cross_keys: torch.Tensor | None = None
    """[layers, rows, heads, text_length, head_dim]"""
    cross_values: torch.Tensor | None = None
    cross_mask: torch.Tensor | None = None
    """[rows, 1, 1, text_length] bool"""

    @property
    def length(self) -> int:
        return self.keys.shape[3]


def cache_bytes(lm: Any, rows: int, length: int, text_length: int, dtype: torch.dtype) -> int:
    """Bytes a KVCache for these sizes takes: planned before allocating it."""
    layers = len(lm.transformer.layers)
    per_position = 2 * layers * rows * lm.dim * torch.empty((), dtype=dtype).element_size()
    has_cross = lm.transformer.layers[0].cross_attention is not None
    return per_position * (length + (text_length if has_cross else 0))


class StaticLM:
    """The transformer of a loaded `LMModel` as `logits = forward(cache, tokens, positions)`."""

    def __init__(self, lm: Any) -> None:
        problems = unsupported_features(lm)
        if problems:
            raise ValueError("; ".join(problems))
        self.lm = lm
        transformer = lm.transformer
        self.heads = transformer.layers[0].self_attn.num_heads
        self.dim = lm.dim
        self.head_dim = self.dim // self.heads
        self.max_period = transformer.max_period
        self.positional_scale = transformer.positional_scale
        self.embeddings = [emb.weight for emb in lm.emb]
        self.layers = [_layer(layer) for layer in transformer.layers]
        self.out_norm = _norm(lm.out_norm) if lm.out_norm is not None else None
        self.heads_out = [(linear.weight, linear.bias) for linear in lm.linears]
        self.cross = self.layers[0].cross is not None
        self._positions: torch.Tensor | None = None

    # --- caches ---------------------------------------------------------------------------------------------
    def new_cache(self, rows: int, length: int, dtype: torch.dtype, device: torch.device) -> KVCache:
        shape = (len(self.layers), rows, self.heads, length, self.head_dim)
        return KVCache(torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))

    def cross_keys_values(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every layer's cross-attention keys and values for the text `source` [rows, text_length, dim]."""
        rows, length, _ = source.shape
        keys, values = [], []
        for layer in self.layers:
            if layer.cross is None:
                raise ValueError("this model has no cross-attention: it takes no text conditioning")
            keys.append(F.linear(source, *layer.cross.k).view(rows, length, self.heads, self.head_dim).transpose(1, 2))
            values.append(F.linear(source, *layer.cross.v).view(rows, length, self.heads, self.head_dim)
                          .transpose(1, 2))
        return torch.stack(keys), torch.stack(values)

    def position_table(self, length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Sinusoidal embeddings of positions 0..length-1 [length, dim], computed by audiocraft's own function in
        the dtype audiocraft computes them in (the transformer input's)."""
        from audiocraft.modules.transformer import create_sin_embedding

        table = self._positions
        if table is None or table.shape[0] < length or table.dtype != dtype or table.device != device:
            positions = torch.arange(length, device=device).view(1, -1, 1)
            table = create_sin_embedding(positions, self.dim, max_period=self.max_period, dtype=dtype)[0]
            self._positions = table
        return table

    # --- the step -------------------------------------------------------------------------------------------
    def forward(self, cache: KVCache, tokens: torch.Tensor, positions: torch.Tensor, visible: int,
                self_mask: torch.Tensor | None) -> torch.Tensor:
        """Run `tokens` [rows, codebooks, T] at `positions` [T]; returns the last position's logits
        [rows, codebooks, card].

        Each layer writes its keys/values at `positions` and attends over the first `visible` cache positions;
        `self_mask` [T, visible] (True: may attend) hides the ones a query must not see (None: it sees them all).
        """
        rows, codebooks, time = tokens.shape
        x = F.embedding(tokens[:, 0], self.embeddings[0])
        for k in range(1, codebooks):
            x = x + F.embedding(tokens[:, k], self.embeddings[k])
        table = self.position_table(cache.length, x.dtype, x.device)
        x = x + self.positional_scale * table[positions].unsqueeze(0)
        for index, layer in enumerate(self.layers):
            h = F.layer_norm(x, (self.dim,), *layer.norm1)
            qkv = F.linear(h, *layer.qkv).view(rows, time, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
            cache.keys[index].index_copy_(2, positions, qkv[1].to(cache.keys.dtype))
            cache.values[index].index_copy_(2, positions, qkv[2].to(cache.values.dtype))
            attended = _attend(qkv[0], cache.keys[index, :, :, :visible], cache.values[index, :, :, :visible],
                               self_mask, layer.float32_attention)
            x = _residual(x, F.linear(attended, *layer.out), layer.scale1)
            if layer.cross is not None:
                if cache.cross_keys is None or cache.cross_values is None:
                    raise ValueError("a text-conditioned model needs the text's keys in the cache (KVCache.cross_*)")
                h = F.layer_norm(x, (self.dim,), *layer.cross.norm)
                q = F.linear(h, *layer.cross.q).view(rows, time, self.heads, self.head_dim).transpose(1, 2)
                attended = _attend(q, cache.cross_keys[index], cache.cross_values[index], cache.cross_mask,
                                   layer.float32_attention)
                x = _residual(x, F.linear(attended, *layer.cross.out), layer.cross.scale)
            h = F.layer_norm(x, (self.dim,), *layer.norm2)
            x = _residual(x, F.linear(layer.activation(F.linear(h, *layer.ff1)), *layer.ff2), layer.scale2)
        last = x[:, -1]
        if self.out_norm is not None:
            last = F.layer_norm(last, (self.dim,), *self.out_norm)
        return torch.stack([F.linear(last, *head) for head in self.heads_out], dim=1)

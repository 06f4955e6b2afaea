"""A small byte-level decoder-only transformer with a KV cache (the target and the draft share it).

Pre-LayerNorm GPT blocks, learned absolute positions, output head tied to the byte embedding.
Training runs :meth:`ByteTransformer.forward` on batches; inference runs :meth:`ByteTransformer.step`
on one sequence, appending to a :class:`KVCache` that the speculative decoder truncates to roll
back rejected draft tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

VOCAB_SIZE = 256  # bytes


@dataclass(frozen=True)
class ModelConfig:
    """Shape of one model; ``context`` is the longest sequence (positions) it can attend over."""

    n_layers: int
    d_model: int
    n_heads: int
    context: int = 256

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


class KVCache:
    """Keys and values of the tokens fed so far, for one sequence.

    ``keys``/``values``: [n_layers, n_heads, context, head_dim]; positions ``0..length-1`` are valid.
    Truncating (rolling back) is setting ``length``: stale entries past it are overwritten later.
    """

    def __init__(self, config: ModelConfig, dtype: torch.dtype = torch.float32):
        shape = (config.n_layers, config.n_heads, config.context, config.head_dim)
        self.keys = torch.zeros(shape, dtype=dtype)
        self.values = torch.zeros(shape, dtype=dtype)
        self.context = config.context
        self.length = 0

    def truncate(self, length: int) -> None:
        """Forget every position from ``length`` on."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a cache of length {self.length} to {length}")
        self.length = length


class _Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.ln1 = nn.LayerNorm(config.d_model)
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.ln2 = nn.LayerNorm(config.d_model)
        self.fc = nn.Linear(config.d_model, 4 * config.d_model)
        self.out = nn.Linear(4 * config.d_model, config.d_model)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        """x: [B, T, d_model] (training, causal) or [T, d_model] with ``cache`` (inference)."""
        *lead, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(*lead, t, 3, self.n_heads, d // self.n_heads).unbind(-3)
        q, k, v = (z.transpose(-3, -2) for z in (q, k, v))  # [..., heads, T, head_dim]
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            start, end = cache.length, cache.length + t
            cache.keys[layer, :, start:end] = k
            cache.values[layer, :, start:end] = v
            mask = None
            if t > 1:  # new token i (position start+i) sees the cached prefix and new tokens 0..i
                mask = torch.ones(t, end, dtype=torch.bool).tril(diagonal=start)
            y = F.scaled_dot_product_attention(
                q, cache.keys[layer, :, :end], cache.values[layer, :, :end], attn_mask=mask
            )
        x = x + self.proj(y.transpose(-3, -2).reshape(*lead, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class ByteTransformer(nn.Module):
    """Decoder-only language model over bytes; logits are over the next byte (256 classes)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.d_model % config.n_heads:
            raise ValueError(f"d_model {config.d_model} is not divisible by n_heads {config.n_heads}")
        self.config = config
        self.tok_emb = nn.Embedding(VOCAB_SIZE, config.d_model)
        self.pos_emb = nn.Embedding(config.context, config.d_model)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.ln_f(x), self.tok_emb.weight)  # tied head: fewer parameters to train

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Training pass. idx: [B, T] byte ids, T <= context -> logits [B, T, 256]."""
        x = self.tok_emb(idx) + self.pos_emb.weight[: idx.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self._logits(x)

    def new_cache(self) -> KVCache:
        return KVCache(self.config, dtype=self.tok_emb.weight.dtype)

    def step(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Feed ``tokens`` ([T] byte ids) after the cached prefix; returns logits [T, 256].

        Row i is the next-byte distribution after token i. The cache grows by T.
        """
        t = tokens.shape[0]
        start = cache.length
        if start + t > cache.context:
            raise ValueError(f"context of {cache.context} positions exceeded ({start} cached + {t} new)")
        x = self.tok_emb(tokens) + self.pos_emb.weight[start : start + t]
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer)
        cache.length = start + t
        return self._logits(x)

"""Llama-family transformer in plain PyTorch, reading a paged KV cache.

Parameter names match HF `LlamaForCausalLM`, so an HF safetensors state dict loads as is. One forward serves
batched prefill and batched decode: every row carries its own start position and block table, so requests of
different lengths share a step (continuous batching).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LlamaArgs:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False

    @classmethod
    def from_hf(cls, cfg: dict[str, Any]) -> LlamaArgs:
        rope = cfg.get("rope_parameters") or {}
        scaling = cfg.get("rope_scaling") or (rope if rope.get("rope_type", "default") != "default" else None)
        heads = cfg["num_attention_heads"]
        return cls(
            vocab_size=cfg["vocab_size"],
            hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"],
            num_hidden_layers=cfg["num_hidden_layers"],
            num_attention_heads=heads,
            num_key_value_heads=cfg.get("num_key_value_heads", heads),
            head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
            rms_norm_eps=cfg.get("rms_norm_eps", 1e-5),
            rope_theta=cfg.get("rope_theta", rope.get("rope_theta", 10000.0)),
            rope_scaling=scaling,
            max_position_embeddings=cfg.get("max_position_embeddings", 4096),
            tie_word_embeddings=cfg.get("tie_word_embeddings", False),
            attention_bias=cfg.get("attention_bias", False),
            mlp_bias=cfg.get("mlp_bias", False),
        )


def rope_inv_freq(args: LlamaArgs) -> torch.Tensor:
    """Inverse RoPE frequencies, with Llama 3's long-context scaling when the checkpoint asks for it."""
    d = args.head_dim
    inv = 1.0 / (args.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    s = args.rope_scaling or {}
    if s.get("rope_type", s.get("type")) == "llama3":
        factor, lo, hi = s["factor"], s.get("low_freq_factor", 1.0), s.get("high_freq_factor", 4.0)
        old_len = s.get("original_max_position_embeddings", 8192)
        wavelen = 2 * math.pi / inv
        smooth = ((old_len / wavelen) - lo) / (hi - lo)
        scaled = torch.where(wavelen > old_len / lo, inv / factor, inv)
        mid = (wavelen <= old_len / lo) & (wavelen >= old_len / hi)
        inv = torch.where(mid, (1 - smooth) * inv / factor + smooth * inv, scaled)
    return inv.float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: [B, S, H, D]; cos/sin: [B, S, 1, D/2] (HF's rotate-half convention)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).type_as(x)


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Masked attention with grouped KV heads, without copying K/V per query head.

    q: [B, S, H, D]; k, v: [B, L, KV, D]; valid: [B, S, L]. The g = H / KV query heads sharing a KV head are
    folded into the query length, so the fused (memory-efficient / flash) kernels run on plain shapes; SDPA's
    enable_gqa with a mask falls back to the math kernel on CUDA (measured on an H200: most of a decode step).
    """
    B, S, H, D = q.shape
    kv = k.shape[2]
    g = H // kv
    q = q.view(B, S, kv, g, D).permute(0, 2, 3, 1, 4).reshape(B, kv, g * S, D)
    mask = valid.unsqueeze(1).unsqueeze(2).expand(B, 1, g, S, valid.shape[-1]).reshape(B, 1, g * S, -1)
    out = F.scaled_dot_product_attention(q, k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
    return out.view(B, kv, g, S, D).permute(0, 3, 1, 2, 4).reshape(B, S, H, D)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), self.eps).type_as(x)


@dataclass
class BatchView:
    """Where each row of a step reads and writes the paged KV cache.

    positions:   [B, S] absolute position of every query token
    slot_ids:    [B, S] flat cache slot (block * block_size + offset) each token's K/V is written to
    block_table: [B, NB] cache blocks of each row, in order (NB = blocks covering the longest row)
    valid:       [B, S, NB*block_size] True where query token s may attend to key position k (causal, in range)
    """

    positions: torch.Tensor
    slot_ids: torch.Tensor
    block_table: torch.Tensor
    valid: torch.Tensor
    block_size: int


class Attention(nn.Module):
    def __init__(self, a: LlamaArgs):
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = a.num_attention_heads, a.num_key_value_heads, a.head_dim
        self.q_proj = nn.Linear(a.hidden_size, a.num_attention_heads * a.head_dim, bias=a.attention_bias)
        self.k_proj = nn.Linear(a.hidden_size, a.num_key_value_heads * a.head_dim, bias=a.attention_bias)
        self.v_proj = nn.Linear(a.hidden_size, a.num_key_value_heads * a.head_dim, bias=a.attention_bias)
        self.o_proj = nn.Linear(a.num_attention_heads * a.head_dim, a.hidden_size, bias=a.attention_bias)

    def fuse(self) -> None:
        """One [q; k; v] projection instead of three (fewer, larger matmuls; a third of the kernel launches)."""
        parts = [self.q_proj, self.k_proj, self.v_proj]
        self.qkv_proj = nn.Linear(1, 1, bias=parts[0].bias is not None, device="meta")
        self.qkv_proj.weight = nn.Parameter(torch.cat([p.weight for p in parts]), requires_grad=False)
        if parts[0].bias is not None:
            self.qkv_proj.bias = nn.Parameter(torch.cat([p.bias for p in parts]), requires_grad=False)
        del self.q_proj, self.k_proj, self.v_proj

    def forward(self, x, cos, sin, view: BatchView, k_cache, v_cache):
        # x: [B, S, hidden]; k_cache/v_cache: [num_blocks * block_size, n_kv, head_dim]
        B, S, _ = x.shape
        nq, nkv = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        if hasattr(self, "qkv_proj"):
            q, k, v = self.qkv_proj(x).split([nq, nkv, nkv], dim=-1)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q = apply_rope(q.view(B, S, self.n_heads, self.head_dim), cos, sin)
        k = apply_rope(k.view(B, S, self.n_kv, self.head_dim), cos, sin)
        v = v.reshape(B, S, self.n_kv, self.head_dim)
        k_cache[view.slot_ids.flatten()] = k.reshape(B * S, self.n_kv, self.head_dim)
        v_cache[view.slot_ids.flatten()] = v.reshape(B * S, self.n_kv, self.head_dim)
        # gather each row's keys in position order: [B, L, n_kv, D] with L = NB * block_size
        keys = k_cache.view(-1, view.block_size, self.n_kv, self.head_dim)[view.block_table].flatten(1, 2)
        vals = v_cache.view(-1, view.block_size, self.n_kv, self.head_dim)[view.block_table].flatten(1, 2)
        out = grouped_attention(q, keys, vals, view.valid)  # [B, S, H, D]
        return self.o_proj(out.reshape(B, S, self.n_heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, a: LlamaArgs):
        super().__init__()
        self.gate_proj = nn.Linear(a.hidden_size, a.intermediate_size, bias=a.mlp_bias)
        self.up_proj = nn.Linear(a.hidden_size, a.intermediate_size, bias=a.mlp_bias)
        self.down_proj = nn.Linear(a.intermediate_size, a.hidden_size, bias=a.mlp_bias)

    def fuse(self) -> None:
        """One [gate; up] projection instead of two."""
        self.gate_up_proj = nn.Linear(1, 1, bias=self.gate_proj.bias is not None, device="meta")
        self.gate_up_proj.weight = nn.Parameter(torch.cat([self.gate_proj.weight, self.up_proj.weight]),
                                                requires_grad=False)
        if self.gate_proj.bias is not None:
            self.gate_up_proj.bias = nn.Parameter(torch.cat([self.gate_proj.bias, self.up_proj.bias]),
                                                  requires_grad=False)
        del self.gate_proj, self.up_proj

    def forward(self, x):
        if hasattr(self, "gate_up_proj"):
            gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        else:
            gate, up = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, a: LlamaArgs):
        super().__init__()
        self.self_attn = Attention(a)
        self.mlp = MLP(a)
        self.input_layernorm = RMSNorm(a.hidden_size, a.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(a.hidden_size, a.rms_norm_eps)

    def forward(self, x, cos, sin, view, k_cache, v_cache):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, view, k_cache, v_cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaBody(nn.Module):
    def __init__(self, a: LlamaArgs):
        super().__init__()
        self.embed_tokens = nn.Embedding(a.vocab_size, a.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(a) for _ in range(a.num_hidden_layers))
        self.norm = RMSNorm(a.hidden_size, a.rms_norm_eps)


class LlamaForCausalLM(nn.Module):
    def __init__(self, args: LlamaArgs):
        super().__init__()
        self.args = args
        self.model = LlamaBody(args)
        self.lm_head = nn.Linear(args.hidden_size, args.vocab_size, bias=False)
        self.register_buffer("inv_freq", rope_inv_freq(args), persistent=False)

    def fuse_projections(self) -> None:
        """After loading HF weights: fuse q/k/v and gate/up projections (identical results, fewer kernels)."""
        for layer in self.model.layers:
            layer.self_attn.fuse()
            layer.mlp.fuse()

    def tie_weights(self) -> None:
        if self.args.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, tokens: torch.Tensor, view: BatchView, kv: list[tuple[torch.Tensor, torch.Tensor]],
                last_index: torch.Tensor) -> torch.Tensor:
        """tokens: [B, S]; last_index: [B] which query position's logits to return. Returns [B, vocab] fp32."""
        freqs = view.positions.unsqueeze(-1).float() * self.inv_freq  # [B, S, D/2]
        cos, sin = freqs.cos().unsqueeze(2), freqs.sin().unsqueeze(2)
        x = self.model.embed_tokens(tokens)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        for layer, (k_cache, v_cache) in zip(self.model.layers, kv, strict=True):
            x = layer(x, cos, sin, view, k_cache, v_cache)
        x = x[torch.arange(x.shape[0], device=x.device), last_index]  # [B, hidden]
        return self.lm_head(self.model.norm(x)).float()

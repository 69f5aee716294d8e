"""A decoder-only GPT in Llama's layout, so `refinery export hf` maps it 1:1 onto `LlamaForCausalLM`.

- Rotary position embeddings in the rotate-half layout of HF Llama (`apply_rotary_pos_emb`): the
  first and second halves of each head are the pair that rotates, so q/k weights export unpermuted.
  nanochat uses the same halves but rotates the other way (x1·sin added to y1); that is a valid
  RoPE too, but its weights would not load into Llama.
- RMSNorm with a gain (Llama's; nanochat's has none), pre-norm blocks, a final norm.
- SwiGLU MLP (Shazeer 2020) of width 8/3·d: the parameter count of a 4·d GELU MLP, and the one
  Llama has; nanochat's ReLU² would need a custom architecture on export.
- Causal `F.scaled_dot_product_attention`: flash attention on CUDA, the fused CPU kernel on CPU.
  q, k and v come from one matmul, gate and up from another (fewer, larger GEMMs), and q and k
  rotate in one call; export splits the matrices.
- No biases. Untied input and output embeddings by default (nanochat's choice; tying is an
  option). Init is GPT-2's, all in `init_weights`. On CPU, training/loop.py flushes denormal
  floats to zero: Adam's moments of embedding rows no batch touches decay into them.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from training import losses
from training.config import ModelConfig, OptimConfig

# GPT-2's init (Radford et al. 2019, §2.3): N(0, 0.02) everywhere, and the projections that
# write into the residual stream scaled by 1/sqrt(2·n_layer), one per attention and MLP.
INIT_STD = 0.02


def rope_tables(cfg: ModelConfig, length: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, float32 (length, head_dim/2), with HF Llama's default frequencies."""
    dim = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim))
    angles = torch.outer(torch.arange(length, dtype=torch.float32, device=device), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, T, H, D) by position: x·cos + rotate_half(x)·sin, as HF Llama computes it.

    cos/sin are (T, D/2) for positions shared by the batch or (B, T, D/2) per row (left padding).
    The halves come from `unbind` and go back with `stack`, whose backward passes are views; slicing
    would zero-fill a full-size gradient per half.
    """
    x1, x2 = x.unflatten(-1, (2, -1)).unbind(-2)
    cos, sin = cos.unsqueeze(-2).to(x.dtype), sin.unsqueeze(-2).to(x.dtype)
    return torch.stack((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-2).flatten(-2)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.layer, self.n_head, self.n_kv, self.head_dim = layer, cfg.n_head, cfg.kv_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, (cfg.n_head + 2 * cfg.kv_heads) * cfg.head_dim, bias=False)
        self.proj = nn.Linear(cfg.n_head * cfg.head_dim, cfg.d_model, bias=False)

    def forward(self, x, cos, sin, kv_cache, attn_mask, causal: bool) -> torch.Tensor:
        B, T, _ = x.shape
        q_size, kv_size = self.n_head * self.head_dim, self.n_kv * self.head_dim
        qk, v = self.qkv(x).split([q_size + kv_size, kv_size], dim=-1)
        # q and k heads rotate in one call: they are adjacent in the fused projection.
        qk = apply_rope(qk.view(B, T, self.n_head + self.n_kv, self.head_dim), cos, sin)
        q, k = qk.transpose(1, 2).split([self.n_head, self.n_kv], dim=1)
        v = v.view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer, k, v)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=causal, enable_gqa=self.n_kv != self.n_head
        )
        return self.proj(y.transpose(1, 2).reshape(B, T, q_size))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_up = nn.Linear(cfg.d_model, 2 * cfg.hidden, bias=False)
        self.down = nn.Linear(cfg.hidden, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.attn_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.attn = Attention(cfg, layer)
        self.mlp_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, kv_cache=None, attn_mask=None, causal: bool = True) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, kv_cache, attn_mask, causal)
        return x + self.mlp(self.mlp_norm(x))


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        assert cfg.vocab_size, "ModelConfig.vocab_size must be set (from the shard manifest)"
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        # Derived from the config, so not saved: a checkpoint holds only learned weights.
        cos, sin = rope_tables(cfg, cfg.context_length)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.init_weights(seed=0)

    @torch.no_grad()
    def init_weights(self, seed: int) -> None:
        """All initialization, from its own generator (no hidden global RNG)."""
        gen = torch.Generator().manual_seed(seed)
        residual_std = INIT_STD / math.sqrt(2 * self.cfg.n_layer)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                std = residual_std if name.endswith(("attn.proj", "mlp.down")) else INIT_STD
                # Drawn on CPU and copied, so the weights are the same on every device.
                module.weight.copy_(torch.empty(module.weight.shape).normal_(0.0, std, generator=gen))
            elif isinstance(module, nn.RMSNorm):
                module.weight.fill_(1.0)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        kv_cache=None,
        reduction: str = "mean",
    ) -> torch.Tensor:
        """Logits (B, T, V) without targets; with them, the next-token loss (training/losses.py)."""
        logits = self.lm_head(self.hidden(idx, kv_cache=kv_cache))
        if targets is None:
            return logits
        return losses.next_token_nll(logits, targets, reduction=reduction)

    def hidden(self, idx: torch.Tensor, *, kv_cache=None) -> torch.Tensor:
        """The final normed hidden states (B, T, d_model) that the LM head reads; scalar heads (the
        reward model's, PPO's critic) read them too (training/reward.py)."""
        T = idx.shape[1]
        if kv_cache is None:
            assert T <= self.cfg.context_length, f"sequence of {T} > context {self.cfg.context_length}"
            cos, sin, mask, causal = self.cos[:T], self.sin[:T], None, True
        else:
            positions, mask, causal = kv_cache.attention(T)
            cos, sin = self.cos[positions], self.sin[positions]
        x = self.wte(idx)
        for block in self.blocks:
            x = block(x, cos, sin, kv_cache, mask, causal)
        if kv_cache is not None:
            kv_cache.advance(T)
        return self.norm(x)

    def optimizer(self, cfg: OptimConfig, *, fused: bool | None = None) -> torch.optim.AdamW:
        """AdamW with weight decay on matrices (embeddings, projections) only, not on norm gains."""
        params = [
            p for p in self.parameters() if p.requires_grad
        ]  # tied weights appear once; LoRA freezes the base
        groups = [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=fused)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

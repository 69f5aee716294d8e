"""LoRA: low-rank adapters on the attention and MLP projections (Hu et al. 2021, "LoRA: Low-Rank
Adaptation of Large Language Models").

Each adapted `nn.Linear` W (out × in) gains A (rank × in) and B (out × rank) and computes
`x Wᵀ + (alpha / rank) · x Aᵀ Bᵀ`. A is Gaussian with std 1/rank and B is zero, so training
starts exactly from the base model. The paper (§4.1) asks only for a random Gaussian A and a zero
B; std 1/rank is PEFT's `init_lora_weights="gaussian"`. The reference code (microsoft/LoRA,
`loralib/layers.py`) and PEFT's default draw A kaiming-uniform instead, bound 1/√in: std 0.036
for in = 256, against 0.125 here at rank 8. With B at zero the scale of A changes how fast B
moves at first (its gradient is proportional to A·x), not where training starts; every LoRA
figure in bench/RESULTS.md was measured with this init, so it stays. The base weights are
frozen: only A and B train, well under 5% of the parameters at small ranks. `merge` folds B·A
into W for export and fast sampling; `adapter_state` is what a LoRA checkpoint stores.

With `embeddings=True` the token embedding and the output layer are adapted too (PEFT's
`target_modules` may name them; the reference code has `lora.Embedding`). A small model's
pretraining barely shapes the rows of tokens its crawl text rarely holds (numbers, the chat
tokens), and SFT has to rebuild them: with them frozen, rank-8 adapters fit the demo SFT data
far worse (bench/RESULTS.md, "SFT at demo scale"). A tokenizer with one token per digit leaves
fewer such rows (ten digits instead of ~100 irregular number tokens) and brings LoRA within 7
points of full SFT on the demo's word problems ("one token per digit"). For the embedding, A is
the looked-up side (vocab × rank) and starts at zero, and B (rank × d_model) is Gaussian with std
1/rank, so the delta again starts at zero; the reference code's `lora.Embedding` also zeroes A,
and draws B with std 1.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from training.model import GPT

TARGETS = ("attn.qkv", "attn.proj", "mlp.gate_up", "mlp.down")


class Adapter(nn.Module):
    """A frozen layer `base` plus `scale` times the low-rank product of `lora_a` and `lora_b`."""

    def __init__(self, base: nn.Module, rank: int, alpha: float, a: torch.Tensor, b: torch.Tensor):
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(a.to(base.weight.device))
        self.lora_b = nn.Parameter(b.to(base.weight.device))


class LoRALinear(Adapter):
    def __init__(self, base: nn.Linear, rank: int, alpha: float, generator: torch.Generator):
        a = torch.empty(rank, base.in_features).normal_(0.0, 1.0 / rank, generator=generator)
        super().__init__(base, rank, alpha, a, torch.zeros(base.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * ((x @ self.lora_a.t().to(x.dtype)) @ self.lora_b.t().to(x.dtype))

    def delta(self) -> torch.Tensor:
        return self.scale * self.lora_b @ self.lora_a


class LoRAEmbedding(Adapter):
    def __init__(self, base: nn.Embedding, rank: int, alpha: float, generator: torch.Generator):
        b = torch.empty(rank, base.embedding_dim).normal_(0.0, 1.0 / rank, generator=generator)
        super().__init__(base, rank, alpha, torch.zeros(base.num_embeddings, rank), b)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.base(idx) + self.scale * (F.embedding(idx, self.lora_a) @ self.lora_b)

    def delta(self) -> torch.Tensor:
        return self.scale * self.lora_a @ self.lora_b


def add_lora(model: GPT, rank: int, alpha: float, seed: int = 0, *, embeddings: bool = False) -> GPT:
    """Freeze `model` and wrap every target projection with an adapter, in place; with
    `embeddings`, the token embedding and the output layer as well."""
    if rank <= 0:
        raise ValueError(f"LoRA rank must be positive, got {rank}")
    if embeddings and model.cfg.tie_embeddings:
        raise ValueError("LoRA on the embeddings needs untied input and output embeddings")
    for p in model.parameters():
        p.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    for name, module in list(model.named_modules()):
        for attr in ("qkv", "proj", "gate_up", "down"):
            child = getattr(module, attr, None)
            if isinstance(child, nn.Linear) and f"{name.split('.')[-1]}.{attr}" in TARGETS:
                setattr(module, attr, LoRALinear(child, rank, alpha, generator))
    if embeddings:
        model.wte = LoRAEmbedding(model.wte, rank, alpha, generator)
        model.lm_head = LoRALinear(model.lm_head, rank, alpha, generator)
    return model


def merge_lora(model: GPT) -> GPT:
    """Fold every adapter into the layer it wraps and put that layer back, in place: a plain GPT again."""
    for module in list(model.modules()):
        for attr, child in list(module.named_children()):
            if isinstance(child, Adapter):
                with torch.no_grad():
                    child.base.weight.add_(child.delta())
                setattr(module, attr, child.base)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def adapter_state(model: GPT) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if ".lora_" in k}


def trainable_fraction(model: nn.Module) -> float:
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trained / sum(p.numel() for p in model.parameters())

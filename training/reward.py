"""Reward model: `refinery train reward --config conf/train/reward.yaml --init SFT --data PREFS --out OUT`.

The SFT checkpoint's GPT (every weight trains) with a scalar head on its final hidden state at
the last token of the response, the `<|im_end|>` that closes the assistant turn: by then the
causal backbone has read the prompt and the whole response (Ouyang et al. 2022, §3.5, read the
final token the same way). Trained with the Bradley-Terry loss (training/losses.py) on PREFS/
train.jsonl of `refinery synth preferences`; validation scores PREFS/test.jsonl, pairs built from
held-out problems, and reports pairwise accuracy overall and per source (`val_acc`,
`val_acc_<source>`), the Bradley-Terry loss, and `val_prefers_longer`: how often the higher
score goes to the longer response, a length-bias check.

Two options read the backbone's own LM head. `likelihood_weight` β adds β × the response's mean
token log-probability to the score (SimPO's reward): a wrong digit in one step moves the
likelihood far more than the last hidden state. `nll_weight` α adds α × the chosen responses'
mean token NLL to the loss (the SFT regularizer of Yang et al. 2024), so that training on the
pairs keeps that head a language model, and one that knows the chosen solutions better. With the
likelihood term alone, training on the pairs lowers held-out accuracy below the untrained
likelihood's; with both, it rises past it (bench/RESULTS.md).

Scores are only defined up to a constant (the loss sees differences), so the head's bias never
trains. The last validation's mean and standard deviation of held-out scores (chosen and
rejected together) are saved in the checkpoint (`val_score_mean`, `val_score_std`), and
`load_reward_model` folds them into the head: a loaded reward model scores held-out responses
with mean 0 and std 1, the scale the alignment methods' β and clip ranges are set for (as
InstructGPT normalizes its reward model with a bias before RL).
"""

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from training.checkpoint import load_model, read_meta
from training.config import ModelConfig, OptimConfig, RewardConfig
from training.loop import runtime, train_loop
from training.losses import bradley_terry_loss, token_logprobs
from training.model import GPT
from training.pairs import PairBatches, read_pairs
from training.sft import from_checkpoint, resolve_checkpoint

KIND = "reward_model"  # meta.json "kind" of a reward-model checkpoint


def last_index(mask: torch.Tensor) -> torch.Tensor:
    """Index in ids of each row's last response token, from the target mask (B, L−1)."""
    positions = torch.arange(mask.shape[1], device=mask.device)
    return (mask * positions).argmax(dim=1) + 1


class RewardModel(nn.Module):
    """GPT backbone + linear head to one scalar per position; the score is the last response token's,
    plus `likelihood_weight` times the response's mean token log-probability under the backbone's
    own LM head when that weight is set."""

    def __init__(
        self, backbone: GPT, margin: float = 0.0, likelihood_weight: float = 0.0, nll_weight: float = 0.0
    ):
        super().__init__()
        self.backbone, self.margin = backbone, margin
        self.likelihood_weight, self.nll_weight = likelihood_weight, nll_weight
        self.head = nn.Linear(backbone.cfg.d_model, 1)
        # Zero: every score starts at 0 and the loss at ln 2; the backbone's features decide the rest.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def values(self, ids: torch.Tensor) -> torch.Tensor:
        """The head at every position (B, T), float32: PPO's critic reads all of them."""
        return self._read(self.backbone.hidden(ids))

    def _read(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden).squeeze(-1).float()

    def _token_logprobs(self, hidden: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """log p(target) (B, L−1) under the backbone's own LM head."""
        return token_logprobs(self.backbone.lm_head(hidden[:, :-1]), ids[:, 1:])

    def _parts(self, ids: torch.Tensor, mask: torch.Tensor, likelihood: bool):
        """The head at each row's last response token (B,), and the response's mean token
        log-probability under the backbone's LM head (B,) when `likelihood` (else None)."""
        hidden = self.backbone.hidden(ids)
        last = self._read(hidden).gather(1, last_index(mask)[:, None]).squeeze(1)
        if not likelihood:
            return last, None
        return last, (self._token_logprobs(hidden, ids) * mask).sum(1) / mask.sum(1).clamp(min=1)

    def _combine(self, last: torch.Tensor, mean_logprob: torch.Tensor | None) -> torch.Tensor:
        return last + self.likelihood_weight * mean_logprob if self.likelihood_weight else last

    def likelihood_terms(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The likelihood term token by token (B, L−1): β · log p(token) / (response length) at each
        response target, 0 elsewhere; its row sums are the term `score` adds."""
        logprobs = self._token_logprobs(self.backbone.hidden(ids), ids)
        return self.likelihood_weight * logprobs * mask / mask.sum(1, keepdim=True).clamp(min=1)

    def score(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One score per row (B,): the head at its last response token (+ the likelihood term)."""
        return self._combine(*self._parts(ids, mask, bool(self.likelihood_weight)))

    def forward(
        self,
        chosen: torch.Tensor,
        chosen_mask: torch.Tensor,
        rejected: torch.Tensor,
        rejected_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Bradley-Terry loss of a batch of pairs (training/pairs.py), both halves in one pass, plus
        `nll_weight` × the chosen responses' mean token NLL under the backbone's LM head when set."""
        last, mean_logprob = self._parts(
            torch.cat([chosen, rejected]),
            torch.cat([chosen_mask, rejected_mask]),
            bool(self.likelihood_weight or self.nll_weight),
        )
        better, worse = self._combine(last, mean_logprob).chunk(2)
        loss = bradley_terry_loss(better, worse, self.margin)
        if self.nll_weight:
            loss = loss - self.nll_weight * mean_logprob.chunk(2)[0].mean()
        return loss

    @torch.no_grad()
    def normalize_(self, mean: float, std: float) -> "RewardModel":
        """Fold (score − mean) / std into the head and the likelihood weight."""
        self.head.weight.div_(std)
        self.head.bias.sub_(mean).div_(std)
        self.likelihood_weight /= std
        return self


def param_groups(module: nn.Module, optim: OptimConfig, lr_scale: float = 1.0) -> list[dict[str, Any]]:
    """AdamW groups of a module's trainable parameters: decay on matrices only (as GPT.optimizer);
    `lr_scale` is read by train_loop, which sets each group's lr to the schedule's × it."""
    params = [p for p in module.parameters() if p.requires_grad]
    matrices, vectors = [p for p in params if p.ndim >= 2], [p for p in params if p.ndim < 2]
    return [
        {"params": matrices, "weight_decay": optim.weight_decay, "lr_scale": lr_scale},
        {"params": vectors, "weight_decay": 0.0, "lr_scale": lr_scale},
    ]


def adamw(groups: list[dict[str, Any]], optim: OptimConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(groups, lr=optim.lr, betas=optim.betas, eps=optim.eps, fused=True)


def load_reward_model(path: str | Path, device: str | torch.device = "cpu", *, normalized: bool = True):
    """A reward-model checkpoint, eval mode; `normalized` folds the saved held-out mean and std in."""
    path = resolve_checkpoint(path)
    meta = read_meta(path)
    if meta.get("kind") != KIND:
        raise ValueError(f"{path}: not a reward-model checkpoint (written by `refinery train reward`)")
    config = meta["config"]
    model = RewardModel(
        GPT(ModelConfig.model_validate(config["model"])),
        config["margin"],
        config.get("likelihood_weight", 0.0),
    )
    model.load_state_dict(torch.load(path / "model.pt", map_location=device, weights_only=True))
    model.to(device).eval()
    if normalized:
        model.normalize_(meta["val_score_mean"], max(meta["val_score_std"], 1e-6))
    return model


@torch.no_grad()
def pair_scores(
    model: RewardModel, pairs: PairBatches, batch_size: int, autocast: Any = None
) -> torch.Tensor:
    """Scores (N, 2) of every pair's chosen and rejected response, in file order."""
    was_training = model.training
    model.eval()
    out = []
    for _, (chosen, chosen_mask, rejected, rejected_mask, *_) in pairs.eval_batches(batch_size):
        with autocast or torch.autocast("cpu", enabled=False):
            scores = model.score(torch.cat([chosen, rejected]), torch.cat([chosen_mask, rejected_mask]))
        out.append(torch.stack(scores.chunk(2), dim=1))
    model.train(was_training)
    return torch.cat(out)


def pair_figures(scores: torch.Tensor, pairs: PairBatches, margin: float = 0.0) -> dict[str, float]:
    """Pairwise accuracy (overall and per source), loss, score mean/std and the length check."""
    right = scores[:, 0] > scores[:, 1]
    figures = {
        "loss": bradley_terry_loss(scores[:, 0], scores[:, 1], margin).item(),
        "acc": right.float().mean().item(),
        "score_mean": scores.mean().item(),
        "score_std": scores.std().item(),
    }
    for source in sorted({p["source"] for p in pairs.pairs}):
        rows = torch.tensor([p["source"] == source for p in pairs.pairs])
        figures[f"acc_{source}"] = right[rows].float().mean().item()
    lengths = torch.tensor([[len(c[0]), len(r[0])] for c, r in pairs.items])
    differ = lengths[:, 0] != lengths[:, 1]
    if differ.any():
        longer_wins = (scores[:, 0] > scores[:, 1]) == (lengths[:, 0] > lengths[:, 1])
        figures["prefers_longer"] = longer_wins[differ].float().mean().item()
    return figures


def train_reward(
    cfg: RewardConfig,
    init: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    resume: bool = False,
    quiet: bool = False,
) -> dict[str, Any]:
    """Train the reward model on DATA/train.jsonl from the checkpoint `init`; return the last figures."""
    rt = runtime(cfg)
    cfg, chat = from_checkpoint(cfg, init)
    init, data = Path(cfg.init), Path(data)
    tokenizer_path = init / "tokenizer.json"
    T = cfg.model.context_length

    model = RewardModel(load_model(init, rt.device), cfg.margin, cfg.likelihood_weight, cfg.nll_weight)
    model = model.to(rt.device).train()
    optimizer = adamw(param_groups(model, cfg.optim), cfg.optim)
    train = PairBatches(
        read_pairs(data / "train.jsonl"), chat, T, seed=cfg.seed, rank=rt.rank, world_size=rt.world
    )
    held_out = PairBatches(read_pairs(data / "test.jsonl", cfg.eval_pairs), chat, T, shuffle=False)

    def validate() -> dict[str, float]:
        return pair_figures(pair_scores(model, held_out, cfg.micro_batch, rt.autocast), held_out, cfg.margin)

    return train_loop(
        cfg,
        rt,
        model,
        optimizer,
        train,
        validate,
        out,
        tokenizer_path,
        tokens_per_step=cfg.global_batch * 2 * T,
        resume=resume,
        quiet=quiet,
        meta_extra={"kind": KIND, "train_pairs": len(train), "dropped_pairs": train.dropped},
    )

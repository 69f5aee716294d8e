"""Training configs: YAML in conf/train/, validated by small frozen pydantic models.

Same rules as the pipeline config (jobs/config.py): every option has a default here and a
type, an unknown key or a wrong type is an error naming the key and the file, and the resolved
config is saved beside the outputs (checkpoint `meta.json`). `ModelConfig` is also the
architecture record a checkpoint carries, so post-training and export rebuild the model from it.
"""

import math
from pathlib import Path
from typing import Literal

import pydantic
from pydantic import BaseModel, ConfigDict, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from corpus.yaml_config import load_yaml

STRICT = ConfigDict(extra="forbid", frozen=True)
# SwiGLU with hidden width 8/3·d has the parameter count of a 4·d GELU MLP (Shazeer 2020,
# "GLU Variants Improve Transformer", §2); rounding up to a multiple of 64 keeps matmuls aligned.
SWIGLU_RATIO = 8 / 3
MLP_MULTIPLE = 64


class ModelConfig(BaseModel):
    """A decoder-only GPT in Llama's layout (training/model.py), exportable to `LlamaForCausalLM`."""

    model_config = STRICT
    vocab_size: PositiveInt | None = None  # None: the shards' vocabulary (filled in before training)
    context_length: PositiveInt = 1024
    n_layer: PositiveInt = 12
    n_head: PositiveInt = 6
    n_kv_head: PositiveInt | None = None  # None: n_head (multi-head); fewer: grouped-query attention
    d_model: PositiveInt = 768
    mlp_hidden: PositiveInt | None = None  # None: 8/3·d_model rounded up to a multiple of 64
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False  # untied by default: see the init note in training/model.py

    @pydantic.model_validator(mode="after")
    def _shapes(self) -> "ModelConfig":
        if self.d_model % self.n_head or (self.d_model // self.n_head) % 2:
            raise ValueError(f"d_model {self.d_model} must split into {self.n_head} heads of even size")
        if self.n_head % self.kv_heads:
            raise ValueError(f"n_head {self.n_head} is not a multiple of n_kv_head {self.kv_heads}")
        return self

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def hidden(self) -> int:
        if self.mlp_hidden:
            return self.mlp_hidden
        return MLP_MULTIPLE * math.ceil(SWIGLU_RATIO * self.d_model / MLP_MULTIPLE)


class OptimConfig(BaseModel):
    """AdamW with weight decay on matrices only, and a warmup + cosine or WSD schedule."""

    model_config = STRICT
    lr: float = 3e-3
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float | None = 1.0  # max global grad norm; None: no clipping
    warmup_steps: NonNegativeInt = 100
    schedule: Literal["cosine", "wsd"] = "cosine"
    cooldown_frac: float = 0.2  # wsd: the last fraction of steps decays linearly to min_lr_ratio
    min_lr_ratio: float = 0.1  # final lr as a fraction of lr
    # Anneal: the last fraction of steps decays linearly from the schedule's value to zero, on the
    # anneal data if one is given (Llama 3 §3.4.3: the final tokens at an lr annealed to 0 on a
    # higher-quality mix); 0: no anneal.
    anneal_frac: float = pydantic.Field(default=0.0, ge=0.0, le=1.0)


class LoopConfig(BaseModel):
    """What the shared training loop (training/loop.py) needs; each phase's config extends it."""

    model_config = STRICT
    seed: int = 0
    steps: PositiveInt = 1000  # optimizer steps; the schedule spans them
    global_batch: PositiveInt = 64  # sequences per optimizer step, over all ranks and accumulation
    micro_batch: PositiveInt = 8  # sequences per forward pass on one rank
    dtype: Literal["bfloat16", "float32"] = "bfloat16"  # autocast dtype; master weights stay fp32
    compile: bool = False  # torch.compile the model
    threads: int | None = None  # CPU intra-op threads per rank; None: torch's default
    log_every: PositiveInt = 10
    eval_every: NonNegativeInt = 250  # also at step 0 and the last step; 0: only those
    save_every: NonNegativeInt = 500  # also at the last step; 0: only at the last step
    keep_checkpoints: PositiveInt = 2  # newest checkpoints kept; older ones are deleted
    optim: OptimConfig = OptimConfig()


class ExtendConfig(BaseModel):
    """Context extension of a continued run (training/continued.py): None keeps the checkpoint's."""

    model_config = STRICT
    context_length: PositiveInt | None = None
    rope_theta: PositiveFloat | None = None


class PretrainConfig(LoopConfig):
    """Pretraining from scratch, or continued from a checkpoint (`init`, training/continued.py)."""

    eval_windows: PositiveInt = 256  # validation windows of context_length tokens, over all ranks
    model: ModelConfig = ModelConfig()  # with `init`: the checkpoint's, with `extend` applied
    # Continued pretraining: start from this checkpoint's weights with a fresh optimizer and
    # schedule; recorded resolved.
    init: str | None = None
    extend: ExtendConfig = ExtendConfig()
    # The shards the anneal (optim.anneal_frac) trains on, e.g. a run's top quality band, written
    # with the same tokenizer; None: the anneal keeps the main shards.
    anneal_shards: str | None = None

    @pydantic.model_validator(mode="after")
    def _continued(self) -> "PretrainConfig":
        if not self.init and self.extend != ExtendConfig():
            raise ValueError("extend changes a checkpoint's context: it needs init (--init CKPT)")
        if self.anneal_shards and not self.optim.anneal_frac:
            raise ValueError("anneal_shards needs optim.anneal_frac > 0, the part of training they serve")
        return self


class LoraOptions(BaseModel):
    """Fine-tune rank-R adapters (training/lora.py) instead of every weight: SFT and alignment."""

    model_config = STRICT
    lora_rank: NonNegativeInt = 0  # 0: full fine-tuning; R: rank-R adapters, base frozen
    lora_alpha: float = 16.0  # adapter scale alpha / rank (training/lora.py)
    lora_embeddings: bool = False  # adapt the token embedding and output layer too


class SftConfig(LoopConfig, LoraOptions):
    """Supervised fine-tuning from a checkpoint; `model` is the checkpoint's (filled in)."""

    init: str | None = None  # the checkpoint to start from (--init); recorded resolved
    eval_conversations: PositiveInt = 256  # held-out conversations for the validation loss
    eval_tasks: NonNegativeInt = 0  # test problems per task answered at each evaluation; 0: none
    max_new_tokens: PositiveInt = 128  # answer length limit in those evaluations
    eval_tools: bool = False  # those evaluations run the model's Python tool calls
    model: ModelConfig | None = None


class RewardConfig(LoopConfig):
    """Reward model (training/reward.py): the checkpoint's GPT and a scalar head, trained on pairs."""

    init: str | None = None  # the checkpoint the backbone starts from (--init, the SFT model)
    margin: float = 0.0  # Bradley-Terry margin m (Llama 2, eq. 2); 0: plain Bradley-Terry
    # β: the score adds β · the response's mean token log-probability under the backbone's LM head
    # (SimPO's length-normalized reward, Meng et al. 2024); 0: the scalar head alone.
    likelihood_weight: float = 0.0
    # α: the loss adds α × the chosen responses' mean token NLL under that LM head, which keeps
    # the backbone a language model while the pairs train it (Yang et al. 2024, "Regularizing
    # Hidden States Enables Learning Generalizable Reward Model for LLMs", their SFT regularizer)
    nll_weight: NonNegativeFloat = 0.0
    eval_pairs: PositiveInt = 1024  # held-out pairs for the pairwise accuracy at each evaluation
    model: ModelConfig | None = None


class SamplingConfig(BaseModel):
    """How responses are drawn for rollouts, best-of-N and on-policy pairs (training/engine.py)."""

    model_config = STRICT
    temperature: float = 1.0  # 1: the policy's own distribution; GRPO/PPO take log-probs at this τ
    top_k: PositiveInt | None = None  # None: the whole vocabulary
    response_tokens: PositiveInt = 128  # a response that has not ended by then is cut


class RewardMix(BaseModel):
    """Reward = checker·[check passes] + format·[final line in the answer's form] +
    reward_model·(normalized reward-model score).

    With `steps`, the checker's verdict also needs the worked steps to hold (training/tasks.py
    `solved`), so an answer right by luck earns nothing. `format` rewards a well-formed final
    line whatever its value (training/tasks.py `well_formed`): what RL from a base model, which
    has never seen `#### ANSWER`, needs to learn first."""

    model_config = STRICT
    checker: float = 1.0
    format: float = 0.0
    reward_model: float = 0.0
    steps: bool = False


class AlignConfig(LoopConfig, LoraOptions):
    """What every method of `refinery train align` shares (training/align.py)."""

    init: str | None = None  # the SFT checkpoint: the policy's start and the frozen reference
    tasks: tuple[str, ...] | None = None  # train prompts of these tasks only; None: every task
    eval_tasks: NonNegativeInt = 100  # held-out problems per task answered greedily per evaluation
    max_new_tokens: PositiveInt = 128  # answer length limit in those evaluations
    sampling: SamplingConfig = SamplingConfig()
    model: ModelConfig | None = None


class DpoConfig(AlignConfig):
    beta: float = 0.1  # Rafailov et al. 2023's β: strength of the pull towards the reference
    nll_weight: NonNegativeFloat = 0.0  # α of DPO+NLL (Pang et al. 2024 use 1); 0: plain DPO
    eval_pairs: PositiveInt = 512  # held-out pairs for the log-probability margin


class KtoConfig(AlignConfig):
    """KTO (training/kto.py): the pairs' chosen and rejected responses as unpaired examples."""

    beta: float = 0.1  # Ethayarajh et al. 2024's β (their default, as DPO's)
    desirable_weight: PositiveFloat = 1.0  # λ_D; the paper keeps λ_D·n_D / (λ_U·n_U) in [1, 4/3]
    undesirable_weight: PositiveFloat = 1.0  # λ_U
    eval_pairs: PositiveInt = 512  # held-out pairs for the margin figures DPO reports too


class RolloutConfig(AlignConfig):
    """On-policy methods (GRPO, PPO): each rollout samples `prompts_per_rollout` train prompts
    `group_size` times, and `epochs` passes of global_batch-sized optimizer steps go over it."""

    prompts_per_rollout: PositiveInt = 16
    group_size: PositiveInt = 8  # samples per prompt (GRPO's G)
    epochs: PositiveInt = 1  # optimization passes over a rollout; 1 and one step each: exactly on-policy
    clip_eps: float = 0.2  # PPO's ε for the probability ratio (Schulman et al. 2017)
    kl_beta: float = 0.04
    reward: RewardMix = RewardMix()

    @property
    def rollout_size(self) -> int:
        return self.prompts_per_rollout * self.group_size

    @property
    def steps_per_rollout(self) -> int:
        return self.epochs * self.rollout_size // self.global_batch

    @pydantic.model_validator(mode="after")
    def _whole_rollouts(self) -> "RolloutConfig":
        if self.rollout_size % self.global_batch:
            raise ValueError(f"a rollout of {self.rollout_size} sequences is not a multiple of global_batch")
        per = self.steps_per_rollout
        for name in ("steps", "save_every"):
            if getattr(self, name) % per:
                raise ValueError(f"{name} must be a multiple of the {per} optimizer steps per rollout")
        # The policy gradient takes log-probs under softmax(logits / τ) (training/losses.py
        # token_logprobs): defined for τ > 0 over the whole vocabulary, not a greedy or top-k draw.
        if self.sampling.temperature <= 0:
            raise ValueError(f"sampling.temperature {self.sampling.temperature}: rollouts must sample (> 0)")
        if self.sampling.top_k is not None:
            raise ValueError("sampling.top_k: rollouts sample the whole vocabulary (the log-probs assume it)")
        return self


class GrpoConfig(RolloutConfig):
    scale_std: bool = True  # divide advantages by the group's std (DeepSeekMath); False: Dr. GRPO


class PpoConfig(RolloutConfig):
    prompts_per_rollout: PositiveInt = 32
    group_size: PositiveInt = 2
    epochs: PositiveInt = 2
    kl_beta: float = 0.02  # per-token KL penalty in the reward (InstructGPT's β = 0.02)
    reward: RewardMix = RewardMix(checker=0.0, reward_model=1.0)
    gamma: float = 1.0  # discount; 1 for a response scored once at its end
    lam: float = 0.95  # GAE λ (Schulman et al. 2016)
    value_clip: float = 0.2  # ε of the clipped value loss, in normalized reward units
    vf_coef: float = 0.5  # weight of the critic's loss (matters only through the shared grad clip)
    whiten: bool = True  # advantages to mean 0, std 1 over the rollout (standard PPO practice)
    critic_lr_scale: PositiveFloat = 1.0  # the critic's lr as a multiple of optim.lr (OpenRLHF: ~10×)
    # Pay the reward model's likelihood term token by token (β·log p / length at each response
    # token) and only its head at the end: the same total, but each token is credited its own term.
    spread_likelihood: bool = False
    critic_warmup: NonNegativeInt = 0  # first rollouts that train the critic alone, the policy frozen


class RsConfig(AlignConfig):
    """Rejection-sampling fine-tuning: best-of-`samples` by reward-model score, then SFT on winners."""

    samples: PositiveInt = 8  # N responses per train prompt
    prompts: PositiveInt | None = None  # train prompts per task to sample; None: all
    min_score: float | None = None  # drop winners scoring below this (normalized); None: keep all
    require_correct: bool = False  # choose among the solved samples only (RFT)


class RoundsConfig(BaseModel):
    """Iterative post-training (training/rounds.py): `rounds` rounds of sample, grade, reward model,
    rejection sampling and DPO, each from the last round's policy. `reward`, `rs` and `dpo` are the
    configs of those steps as `refinery train reward` and `align` read them; rs takes its samples
    from the round, so its own `samples`, `prompts` and `sampling` are errors here."""

    model_config = STRICT
    seed: int = 0
    rounds: PositiveInt = 3
    tasks: tuple[str, ...] | None = None  # prompts of these tasks only; None: every task in the data
    prompts: PositiveInt = 100  # train prompts per task per round: each round takes the next ones
    heldout_prompts: PositiveInt = 50  # test prompts per task sampled each round for the RM's pairs
    samples: PositiveInt = 8  # K responses per prompt from the round's policy
    sampling: SamplingConfig = SamplingConfig()
    pairs_per_prompt: PositiveInt = 1
    # Grade a sample by its final answer and its worked steps (training/tasks.py `solved`), or,
    # False, by the final answer alone: a small model's steps may never hold, leaving no pair.
    steps: bool = True
    eval_tasks: PositiveInt = 100  # held-out problems per task answered greedily after each round
    max_new_tokens: PositiveInt = 128
    dtype: Literal["bfloat16", "float32"] = "bfloat16"  # autocast dtype for sampling and evaluation
    threads: int | None = None  # CPU threads; None: torch's default
    reward: RewardConfig = RewardConfig()
    rs: RsConfig = RsConfig()
    dpo: DpoConfig = DpoConfig()

    @pydantic.model_validator(mode="after")
    def _round_samples(self) -> "RoundsConfig":
        ignored = sorted(self.rs.model_fields_set & {"samples", "prompts", "sampling"})
        if ignored:
            raise ValueError(
                f"rs.{ignored[0]}: rejection sampling picks from the round's samples; set the "
                "top-level prompts, samples and sampling instead"
            )
        return self


# Fields that may differ between a checkpoint and the config it resumes with: they change how
# the run is watched or executed, not the numbers it computes.
RESUMABLE_CHANGES = {
    "compile", "threads", "log_every", "eval_every", "eval_windows", "save_every",
    "eval_conversations", "eval_tasks", "max_new_tokens", "eval_pairs",
}  # fmt: skip


def load_pretrain_config(path: str | Path, overrides: dict | None = None) -> PretrainConfig:
    """`overrides`: top-level keys set before validation (`--init`, a bench's seed)."""
    cfg = load_yaml(path, PretrainConfig, overrides)
    if cfg.global_batch % cfg.micro_batch:
        raise ValueError(f"{path}: global_batch {cfg.global_batch} is not a multiple of micro_batch")
    return cfg

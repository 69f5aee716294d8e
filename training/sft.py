"""Supervised fine-tuning: `refinery train sft --config C --init CKPT --data DIR --out OUT`.

Input: a checkpoint (pretrained, or an earlier SFT) and the JSONL conversations of
`refinery synth sft` (DIR/train.jsonl to train, DIR/test.jsonl to validate). The conversations
are rendered with the loss on assistant tokens only and packed into rows (training/sft_data.py),
then the shared loop of training/loop.py trains them: bf16 autocast, accumulation, clipping,
DDP, checkpoints, exact resume, metrics.jsonl and loss.png, as in pretraining.

Full fine-tuning updates every weight. With `lora_rank` R > 0 the base is frozen and rank-R
adapters train on the attention and MLP projections (training/lora.py); checkpoints then hold
only the adapters, and `training.checkpoint.load_model` merges them into the base they name.

Validation: loss on the held-out conversations' assistant tokens and, with `eval_tasks` N,
greedy exact-match accuracy on the first N test problems of each task (`val_acc_<task>`), so
metrics.jsonl holds the accuracy curve over steps.
"""

import json
from pathlib import Path
from typing import Any, TypeVar

import torch
from pydantic import BaseModel

from corpus.tokenizer import load as load_tokenizer
from training.chat import ChatTokens
from training.checkpoint import load_model, read_meta, resolve_checkpoint
from training.config import ModelConfig, SftConfig
from training.data import token_bytes
from training.eval_tasks import read_problems, task_accuracy
from training.evaluate import evaluate
from training.loop import runtime, train_loop
from training.lora import add_lora, trainable_fraction
from training.sft_data import ChatBatches

C = TypeVar("C", bound=BaseModel)


def from_checkpoint(cfg: C, init: str | Path) -> tuple[C, ChatTokens]:
    """How fine-tuning phases start: `cfg` with `init` resolved to a checkpoint directory and
    `model` set to that checkpoint's architecture, and the chat tokens of its tokenizer."""
    init = resolve_checkpoint(init)
    model = ModelConfig.model_validate(read_meta(init)["config"]["model"])
    cfg = cfg.model_copy(update={"init": str(init), "model": model})
    return cfg, ChatTokens(load_tokenizer(init / "tokenizer.json"))


def read_conversations(path: Path) -> list[list[dict[str, Any]]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (written by `refinery synth sft`)")
    return [json.loads(line)["messages"] for line in path.read_text().splitlines() if line.strip()]


def sft(
    cfg: SftConfig,
    init: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    resume: bool = False,
    quiet: bool = False,
) -> dict[str, Any]:
    """Fine-tune the checkpoint `init` on DATA/train.jsonl; return the last step's figures."""
    rt = runtime(cfg)
    cfg, chat = from_checkpoint(cfg, init)
    init, data = Path(cfg.init), Path(data)
    tokenizer_path = init / "tokenizer.json"

    # --- model: the checkpoint's weights; adapters on top when LoRA
    model = load_model(init, rt.device).train()
    if cfg.lora_rank:
        add_lora(model, cfg.lora_rank, cfg.lora_alpha, seed=cfg.seed, embeddings=cfg.lora_embeddings)
    optimizer = model.optimizer(cfg.optim, fused=True)
    T = model.cfg.context_length

    # --- data: training conversations, held-out conversations and problems
    train_data = ChatBatches(
        read_conversations(data / "train.jsonl"), chat, T, seed=cfg.seed, rank=rt.rank, world_size=rt.world
    )
    held_out = read_conversations(data / "test.jsonl")[: cfg.eval_conversations]
    valid_data = ChatBatches(held_out, chat, T, shuffle=False, rank=rt.rank, world_size=rt.world)
    problems = read_problems(data / "test.jsonl", limit=cfg.eval_tasks) if cfg.eval_tasks else []
    nbytes = torch.from_numpy(token_bytes(chat.tok)).to(rt.device)

    def validate() -> dict[str, float]:
        result = evaluate(model, valid_data.eval_batches(cfg.micro_batch), nbytes, autocast=rt.autocast)
        figures = {"loss": result["loss"]}
        if problems and rt.is_main:
            accuracy = task_accuracy(
                model, chat, problems, cfg.max_new_tokens, autocast=rt.autocast, tools=cfg.eval_tools
            )
            figures |= {f"acc_{task}": acc for task, acc in accuracy.items()}
            model.train()
        return figures

    return train_loop(
        cfg,
        rt,
        model,
        optimizer,
        train_data,
        validate,
        out,
        tokenizer_path,
        tokens_per_step=cfg.global_batch * T,
        resume=resume,
        quiet=quiet,
        trainable_only=bool(cfg.lora_rank),
        meta_extra={"trainable_fraction": trainable_fraction(model), "truncated": train_data.truncated},
    )

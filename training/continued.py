"""Continued pretraining: `refinery train pretrain --init CKPT` (or `init:` in the config).

The run starts from the checkpoint's weights with a fresh optimizer, schedule and data position:
a new phase, not a resume (`--resume` continues a run in its own --out). Everything that shapes the
weights stays the checkpoint's (the config sets no `model`); `extend` may change two fields of it:

- `extend.context_length`: train on longer windows. Rotary embeddings have no learned positions,
  so the weights load unchanged; the rope tables are rebuilt for the new length.
- `extend.rope_theta`: a larger RoPE base slows every frequency, so positions past the old context
  rotate through angles the model has seen ("adjusted base frequency", Xiong et al. 2023,
  "Effective Long-Context Scaling of Foundation Models"; Llama 3 raised it to 500,000 for its
  long-context phase). HF Llama reads the same field, so the extended model exports as it is.

The checkpoint's tokenizer must be the shards' (same sha256): token ids would mean other strings.
"""

from pathlib import Path

import torch

from corpus.tokenizer import file_hash
from training.checkpoint import load_model, read_meta
from training.config import ModelConfig, PretrainConfig
from training.model import GPT


def resolve_init(cfg: PretrainConfig, init: Path, tokenizer_sha256: str) -> PretrainConfig:
    """`cfg` with `init` recorded and `model` set to the checkpoint's architecture with `extend`
    applied; an error if the config sets `model` too, or the checkpoint has another tokenizer."""
    if "model" in cfg.model_fields_set:
        raise ValueError(
            "a continued run (init) keeps the checkpoint's architecture: remove `model:` from the config "
            "(extend.context_length and extend.rope_theta change its context)"
        )
    if file_hash(init / "tokenizer.json") != tokenizer_sha256:
        raise ValueError(f"{init}: trained with another tokenizer than the shards' (sha256 differs)")
    saved = ModelConfig.model_validate(read_meta(init)["config"]["model"])
    changes = {k: v for k, v in cfg.extend.model_dump().items() if v is not None}
    model = ModelConfig.model_validate({**saved.model_dump(), **changes})
    return cfg.model_copy(update={"init": str(init), "model": model})


def continued_model(cfg: PretrainConfig) -> GPT:
    """A GPT of `cfg.model` holding the weights of checkpoint `cfg.init` (LoRA adapters merged)."""
    model = GPT(cfg.model)
    source = load_model(Path(cfg.init))
    with torch.no_grad():
        model.load_state_dict(source.state_dict())
    return model

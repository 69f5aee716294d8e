"""`refinery export hf CKPT OUT`: a checkpoint as a transformers `LlamaForCausalLM` directory.

OUT holds `config.json`, `model.safetensors` (float32), `tokenizer.json` and
`tokenizer_config.json` (plus `special_tokens_map.json`), so `AutoModelForCausalLM` and
`AutoTokenizer` load it with no custom code. The model is Llama's architecture already
(training/model.py): the names map one to one except that our fused `qkv` and `gate_up`
matrices are split into q/k/v and gate/up. No permutation: our rotary layout is HF's rotate-half.
tests/test_export.py checks that the logits agree to 1e-4.

The tokenizer config declares `<|endoftext|>` as end-of-sequence and padding, the chat tokens
(and the tool tokens, when the tokenizer has them) as special, and a chat template writing
DESIGN.md's format, with an assistant turn given as a list of tool parts rendered as
training/chat.py renders it. transformers is imported here only
(it is a dev dependency), for `LlamaConfig` and `PreTrainedTokenizerFast`, which write files the
installed version reads.
"""

import os
import shutil
from pathlib import Path

import torch

from corpus.tokenizer import (
    CONTROL_TOKENS,
    END_OF_TEXT,
    IM_END,
    IM_SEP,
    IM_START,
    OUTPUT_END,
    OUTPUT_START,
    PYTHON_END,
    PYTHON_START,
    TOOL_TOKENS,
    has_tool_tokens,
)
from training.checkpoint import read_meta, resolve_checkpoint
from training.config import ModelConfig

_PARTS = (
    "{% for part in message['content'] %}"
    f"{{% if part['type'] == 'python' %}}{PYTHON_START}{{{{ part['text'] }}}}{PYTHON_END}"
    f"{{% elif part['type'] == 'output' %}}{OUTPUT_START}{{{{ part['text'] }}}}{OUTPUT_END}"
    "{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}"
)
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    f"{IM_START}{{{{ message['role'] }}}}{IM_SEP}"
    f"{{% if message['content'] is string %}}{{{{ message['content'] }}}}{{% else %}}{_PARTS}{{% endif %}}"
    f"{IM_END}"
    "{% endfor %}"
    f"{{% if add_generation_prompt %}}{IM_START}assistant{IM_SEP}{{% endif %}}"
)


def llama_state_dict(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Our parameter names and shapes → `LlamaForCausalLM`'s, as contiguous float32 tensors."""
    q_size, kv_size = cfg.n_head * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    out = {
        "model.embed_tokens.weight": state["wte.weight"],
        "model.norm.weight": state["norm.weight"],
    }
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = state["lm_head.weight"]
    for i in range(cfg.n_layer):
        ours, theirs = f"blocks.{i}.", f"model.layers.{i}."
        q, k, v = state[ours + "attn.qkv.weight"].split([q_size, kv_size, kv_size])
        gate, up = state[ours + "mlp.gate_up.weight"].chunk(2)
        out |= {
            theirs + "input_layernorm.weight": state[ours + "attn_norm.weight"],
            theirs + "self_attn.q_proj.weight": q,
            theirs + "self_attn.k_proj.weight": k,
            theirs + "self_attn.v_proj.weight": v,
            theirs + "self_attn.o_proj.weight": state[ours + "attn.proj.weight"],
            theirs + "post_attention_layernorm.weight": state[ours + "mlp_norm.weight"],
            theirs + "mlp.gate_proj.weight": gate,
            theirs + "mlp.up_proj.weight": up,
            theirs + "mlp.down_proj.weight": state[ours + "mlp.down.weight"],
        }
    return {name: t.detach().float().contiguous().clone() for name, t in out.items()}


def export_hf(checkpoint: str | Path, out: str | Path) -> Path:
    """Write OUT (through a temporary directory renamed at the end); return it."""
    from safetensors.torch import save_file
    from tokenizers import Tokenizer

    try:
        from transformers import LlamaConfig, PreTrainedTokenizerFast
    except ImportError:
        raise ValueError("export hf needs transformers: pip install -e '.[dev]'") from None

    ckpt, out = resolve_checkpoint(checkpoint), Path(out)
    cfg = ModelConfig.model_validate(read_meta(ckpt)["config"]["model"])
    state = torch.load(ckpt / "model.pt", map_location="cpu", weights_only=True)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    save_file(llama_state_dict(state, cfg), tmp / "model.safetensors", metadata={"format": "pt"})
    eot = CONTROL_TOKENS.index(END_OF_TEXT)
    LlamaConfig(
        architectures=["LlamaForCausalLM"],
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.hidden,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.kv_heads,
        head_dim=cfg.head_dim,
        max_position_embeddings=cfg.context_length,
        rms_norm_eps=cfg.norm_eps,
        rope_theta=cfg.rope_theta,
        tie_word_embeddings=cfg.tie_embeddings,
        attention_bias=False,
        mlp_bias=False,
        hidden_act="silu",
        bos_token_id=eot,  # no BOS is prepended in training; end-of-text separates documents (GPT-2)
        eos_token_id=eot,
        pad_token_id=eot,
        dtype="float32",
    ).save_pretrained(tmp)
    tok = Tokenizer.from_file(str(ckpt / "tokenizer.json"))
    tools = list(TOOL_TOKENS) if has_tool_tokens(tok) else []
    PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        additional_special_tokens=[IM_START, IM_SEP, IM_END, *tools],
        chat_template=CHAT_TEMPLATE,
        model_max_length=cfg.context_length,
    ).save_pretrained(tmp)

    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out

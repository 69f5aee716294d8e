import json

import pytest
import torch

from corpus.tokenizer import load
from training.checkpoint import load_model, save_checkpoint
from training.config import ModelConfig, OptimConfig
from training.engine import generate
from training.export import export_hf
from training.model import GPT

transformers = pytest.importorskip("transformers")
MAX_ABS_DIFF = 1e-4
TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?"


def hf_logits(directory, idx):
    hf = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    with torch.no_grad():
        return hf, hf(idx).logits


def test_exported_model_loads_in_transformers_with_the_same_logits(tiny_checkpoint, tmp_path):
    out = export_hf(tiny_checkpoint, tmp_path / "hf")
    ours = load_model(tiny_checkpoint)
    idx = torch.randint(0, ours.cfg.vocab_size, (2, 64), generator=torch.Generator().manual_seed(0))
    hf, logits = hf_logits(out, idx)
    assert type(hf).__name__ == "LlamaForCausalLM"
    with torch.no_grad():
        assert (logits - ours(idx)).abs().max().item() <= MAX_ABS_DIFF


def test_exported_tokenizer_encodes_and_greedy_decodes_like_ours(tiny_checkpoint, tmp_path):
    out = export_hf(tiny_checkpoint, tmp_path / "hf")
    ours = load(tiny_checkpoint / "tokenizer.json")
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    ids = ours.encode(TEXT).ids
    assert hf_tok(TEXT)["input_ids"] == ids and hf_tok.eos_token_id == 0
    assert hf_tok.convert_tokens_to_ids("<|im_end|>") == 3
    model = load_model(tiny_checkpoint)
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    hf_new = hf.generate(torch.tensor([ids]), max_new_tokens=20, do_sample=False)[0, len(ids) :].tolist()
    assert hf_new == generate(model, [ids], 20, temperature=0)[0]


def test_tied_grouped_query_model_exports_with_the_same_logits(text_shards, tmp_path):
    cfg = ModelConfig(vocab_size=512, context_length=32, n_layer=2, n_head=4, n_kv_head=2, d_model=64)
    cfg = cfg.model_copy(update={"tie_embeddings": True})
    model = GPT(cfg)
    with torch.no_grad():  # gains away from 1, so a norm mapped to the wrong place shows
        for module in model.modules():
            if isinstance(module, torch.nn.RMSNorm):
                module.weight.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(1))
    meta = {"step": 0, "config": {"model": cfg.model_dump(mode="json")}}
    tokenizer = text_shards.parent / "tokenizer" / "tokenizer.json"
    ckpt = save_checkpoint(tmp_path, 0, model, model.optimizer(OptimConfig()), meta, tokenizer)
    out = export_hf(tmp_path, tmp_path / "hf")  # a training directory: its latest checkpoint
    config = json.loads((out / "config.json").read_text())
    assert config["tie_word_embeddings"] and config["num_key_value_heads"] == 2
    idx = torch.randint(0, 512, (1, 32), generator=torch.Generator().manual_seed(0))
    _, logits = hf_logits(out, idx)
    with torch.no_grad():
        assert (logits - load_model(ckpt)(idx)).abs().max().item() <= MAX_ABS_DIFF


def test_tool_tokens_export_as_special_and_tool_turns_render_and_score_alike(tiny_checkpoint, tmp_path):
    from corpus.tokenizer import TOOL_TOKENS
    from training.chat import ChatTokens, render

    out = export_hf(tiny_checkpoint, tmp_path / "hf")
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert hf_tok.convert_tokens_to_ids(list(TOOL_TOKENS)) == [4, 5, 6, 7]
    assert set(TOOL_TOKENS) <= set(hf_tok.all_special_tokens)
    conversation = [
        {"role": "user", "content": 'How many "o" in "book"?'},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Counting: "},
                {"type": "python", "text": "'book'.count('o')"},
                {"type": "output", "text": "2"},
                {"type": "text", "text": "2.\n#### 2"},
            ],
        },
    ]
    ours = render(conversation, ChatTokens(load(tiny_checkpoint / "tokenizer.json")))[0]
    text = hf_tok.apply_chat_template(conversation, tokenize=False)
    assert hf_tok(text, add_special_tokens=False)["input_ids"] == ours[1:]  # ours opens with end-of-text
    idx = torch.tensor([ours[:64]])  # a tool turn, its four tool tokens included
    _, logits = hf_logits(out, idx)
    with torch.no_grad():
        assert (logits - load_model(tiny_checkpoint)(idx)).abs().max().item() <= MAX_ABS_DIFF

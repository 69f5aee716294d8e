import json
import random

import pytest
import torch

from corpus.tokenizer import load as load_tokenizer
from training.chat import ChatTokens
from training.checkpoint import latest_checkpoint, load_model
from training.config import ModelConfig, SftConfig
from training.eval_tasks import task_accuracy
from training.lora import add_lora, merge_lora, trainable_fraction
from training.losses import IGNORE_INDEX
from training.model import GPT
from training.sft import sft
from training.sft_data import ChatBatches

TINY = ModelConfig(vocab_size=512, context_length=64, n_layer=2, n_head=4, d_model=64)


def conversations(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randrange(10), rng.randrange(10)
        prompt = f"add {a} and {b}"
        out.append(
            {
                "task": "arithmetic",
                "prompt": prompt,
                "answer": str(a + b),
                "messages": [
                    {"role": "user", "content": prompt},
                    {"role": "assistant", "content": f"#### {a + b}"},
                ],
            }
        )
    return out


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sft_data")
    for name, n, seed in (("train.jsonl", 400, 0), ("test.jsonl", 40, 1)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in conversations(n, seed)))
    return folder


@pytest.fixture(scope="module")
def chat(tiny_checkpoint):
    return ChatTokens(load_tokenizer(tiny_checkpoint / "tokenizer.json"))


CFG = SftConfig(
    steps=30, global_batch=8, micro_batch=8, dtype="float32", threads=1, log_every=5, eval_every=15,
    save_every=10, keep_checkpoints=5, eval_conversations=40, eval_tasks=10, max_new_tokens=8,
    optim={"lr": 3e-3, "warmup_steps": 3, "weight_decay": 0.0},
)  # fmt: skip


def test_only_assistant_tokens_are_targets(chat):
    batches = ChatBatches([c["messages"] for c in conversations(5)], chat, 64, shuffle=False)
    x, y = next(batches.eval_batches(8))
    trained = [t for t in y[0].tolist() if t != IGNORE_INDEX]
    assert chat.tok.decode(trained, skip_special_tokens=False).startswith("#### ")
    assert trained[-1] == chat.end and x.shape == y.shape and x.shape[1] == 64


def test_packed_rows_hold_several_conversations_and_resume_exactly(chat):
    data = ChatBatches([c["messages"] for c in conversations(50)], chat, 64, seed=3)
    assert data.num_rows < 50  # ~20 tokens each: about three per row
    for _ in range(3):
        data.next_batch(4)
    state = data.state_dict()
    expected = data.next_batch(4)
    again = ChatBatches([c["messages"] for c in conversations(50)], chat, 64, seed=3)
    again.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(again.next_batch(4), expected, strict=True))


@pytest.mark.parametrize("embeddings", [False, True])
def test_lora_starts_from_the_base_model_and_trains_a_small_fraction(embeddings):
    model = GPT(TINY)
    idx = torch.randint(0, 512, (2, 16))
    before = model(idx)
    add_lora(model, rank=2, alpha=4.0, embeddings=embeddings)
    assert torch.equal(model(idx), before)
    assert trainable_fraction(model) < 0.05
    trained = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trained and all(".lora_" in name for name in trained)
    assert any(name.startswith("wte.") for name in trained) == embeddings


@pytest.mark.parametrize("embeddings", [False, True])
def test_merged_lora_gives_the_logits_of_base_plus_adapters(embeddings):
    model = GPT(TINY)
    idx = torch.randint(0, 512, (2, 16))
    with torch.no_grad():
        base = model(idx)
    add_lora(model, rank=4, alpha=8.0, embeddings=embeddings)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:  # both factors non-zero, so every adapter changes the output
                p.normal_(0, 0.02)
        adapted = model(idx)
        assert not torch.allclose(adapted, base, atol=1e-4)
        merged = merge_lora(model)(idx)
    assert (adapted - merged).abs().max() < 1e-5
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert set(model.state_dict()) == set(GPT(TINY).state_dict())  # a plain GPT again


def test_lora_on_tied_embeddings_is_refused():
    with pytest.raises(ValueError, match="untied"):
        add_lora(GPT(TINY.model_copy(update={"tie_embeddings": True})), rank=2, alpha=4.0, embeddings=True)


def test_full_sft_lowers_the_held_out_loss(tiny_checkpoint, sft_data, tmp_path):
    result = sft(CFG, tiny_checkpoint, sft_data, tmp_path, quiet=True)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    first = next(r for r in records if "val_loss" in r)
    assert result["val_loss"] < first["val_loss"] - 1.0
    assert "val_acc_arithmetic" in result and (tmp_path / "loss.png").is_file()


@pytest.mark.parametrize("embeddings", [False, True])
def test_lora_sft_checkpoint_holds_adapters_and_loads_merged(tiny_checkpoint, sft_data, tmp_path, embeddings):
    result = sft(
        CFG.model_copy(update={"lora_rank": 2, "lora_alpha": 8.0, "lora_embeddings": embeddings}),
        tiny_checkpoint,
        sft_data,
        tmp_path,
        quiet=True,
    )
    checkpoint = latest_checkpoint(tmp_path)
    saved = torch.load(checkpoint / "model.pt", weights_only=True)
    assert saved and all(".lora_" in k for k in saved)
    model = load_model(checkpoint)
    base = load_model(tiny_checkpoint)
    idx = torch.randint(0, 512, (1, 12))
    assert not torch.equal(model(idx), base(idx))  # the adapters changed something
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert result["val_loss"] < next(r for r in records if "val_loss" in r)["val_loss"]


def test_lora_sft_resumes_bitwise(tiny_checkpoint, sft_data, tmp_path):
    cfg = CFG.model_copy(update={"lora_rank": 2, "steps": 20, "eval_every": 0, "eval_tasks": 0})
    straight = tmp_path / "straight"
    sft(cfg, tiny_checkpoint, sft_data, straight, quiet=True)
    resumed = tmp_path / "resumed"
    sft(cfg.model_copy(update={"steps": 20}), tiny_checkpoint, sft_data, resumed, quiet=True)
    # cut back to step 10 and resume
    import shutil

    for step_dir in (resumed / "checkpoints").glob("step_*"):
        if not step_dir.name.endswith("000010"):
            shutil.rmtree(step_dir)
    sft(cfg, tiny_checkpoint, sft_data, resumed, resume=True, quiet=True)
    a = torch.load(latest_checkpoint(straight) / "model.pt", weights_only=True)
    b = torch.load(latest_checkpoint(resumed) / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_task_accuracy_grades_with_the_checker(tiny_checkpoint, chat):
    problems = conversations(5)
    accuracy = task_accuracy(load_model(tiny_checkpoint), chat, problems, max_new_tokens=4)
    assert set(accuracy) == {"arithmetic", "arithmetic+steps"}
    assert 0.0 <= accuracy["arithmetic+steps"] <= accuracy["arithmetic"] <= 1.0


def test_the_steps_row_counts_only_answers_whose_steps_hold(monkeypatch):
    import training.eval_tasks as eval_tasks

    shared = "25 apples and 20 pears, shared among 5"
    problems = [
        {"task": "arithmetic", "prompt": shared, "answer": "9"},
        {"task": "arithmetic", "prompt": shared + "!", "answer": "9"},
        {"task": "title_choice", "prompt": "p3", "answer": "B"},
    ]
    responses = {
        shared: "25 + 20 = 45\n45 / 5 = 9\n#### 9",
        shared + "!": "25 + 20 = 40\n40 / 5 = 9\n#### 9",  # right by luck
        "p3": "#### B",
    }
    monkeypatch.setattr(
        eval_tasks, "answer", lambda model, chat, prompts, *a: [responses[p] for p in prompts]
    )
    accuracy = eval_tasks.task_accuracy(None, None, problems)
    assert accuracy == {"arithmetic": 1.0, "arithmetic+steps": 0.5, "title_choice": 1.0}
    correct = eval_tasks.task_correctness(None, None, problems)
    assert correct == {"arithmetic": [True, True], "arithmetic+steps": [True, False], "title_choice": [True]}
    record = eval_tasks.evaluation_record(problems, {"m": correct})
    assert record["problems"] == {"arithmetic": 2, "arithmetic+steps": 2, "title_choice": 1}
    assert record["accuracy"] == {"m": accuracy} and record["comparisons"] == []


def outcomes(*pairs: tuple[str, int]) -> tuple[list[bool], list[bool]]:
    """Paired right/wrong lists from counts of ("RW": earlier right, later wrong; ...) pairs."""
    earlier, later = [], []
    for kind, count in pairs:
        earlier += [kind[0] == "R"] * count
        later += [kind[1] == "R"] * count
    return earlier, later


def test_the_sign_test_is_the_binomial_tail_of_the_wins_among_discordant_problems():
    from training.significance import paired_test, sign_test

    # P(X >= 8), X ~ Binomial(9, 1/2): (C(9,8) + C(9,9)) / 2^9 = 10/512
    assert sign_test(8, 1) == pytest.approx(10 / 512, rel=1e-12)
    # ties, right by both or by neither, change nothing but n
    tied = paired_test(*outcomes(("WR", 8), ("RW", 1), ("RR", 30), ("WW", 11)))
    assert tied == {"n": 50, "wins": 8, "losses": 1, "p": pytest.approx(10 / 512, rel=1e-12)}
    assert paired_test(*outcomes(("RR", 3), ("WW", 2))) == {"n": 5, "wins": 0, "losses": 0, "p": 1.0}
    assert sign_test(0, 4) == 1.0
    assert sign_test(1, 8) == pytest.approx(1 - 1 / 512, rel=1e-12)  # worse is not better


def test_comparisons_pool_the_answer_rows_but_not_the_steps_rows_consecutive_models():
    from training.significance import comparison_lines, comparisons

    base, sft_a = outcomes(("WR", 5), ("WW", 1))  # arithmetic: sft wins 5 of 6
    base_s, sft_s = outcomes(("WR", 4), ("WW", 2))  # the same problems with their steps
    base_c, sft_c = outcomes(("WR", 3), ("RW", 1))  # count_letters
    aligned_a, aligned_c = [True] * 5 + [False], outcomes(("RR", 3), ("WW", 1))[1]
    correct = {
        "pretrain": {"arithmetic": base, "arithmetic+steps": base_s, "count_letters": base_c},
        "sft": {"arithmetic": sft_a, "arithmetic+steps": sft_s, "count_letters": sft_c},
        "align": {"arithmetic": aligned_a, "arithmetic+steps": sft_s, "count_letters": aligned_c},
    }
    first, second = comparisons(correct)
    assert (first["earlier"], first["later"], second["earlier"], second["later"]) == (
        "pretrain",
        "sft",
        "sft",
        "align",
    )
    # 10 problems, not 16: the steps rows are the arithmetic problems again
    assert (first["n"], first["wins"], first["losses"]) == (10, 8, 1)
    assert first["p"] == pytest.approx(10 / 512, rel=1e-12)
    assert set(first["tasks"]) == {"arithmetic", "count_letters"}
    assert first["tasks"]["count_letters"] == {"n": 4, "wins": 3, "losses": 1, "p": pytest.approx(5 / 16)}
    assert (second["wins"], second["losses"], second["p"]) == (0, 0, 1.0)
    assert comparison_lines([first, second]) == [
        "sft > pretrain: 8 wins, 1 losses of 10, p = 0.0195",
        "  arithmetic: 5 wins, 0 losses of 6, p = 0.0312",
        "  count_letters: 3 wins, 1 losses of 4, p = 0.3125",
        "align > sft: 0 wins, 0 losses of 10, p = 1.0000",
        "  arithmetic: 0 wins, 0 losses of 6, p = 1.0000",
        "  count_letters: 0 wins, 0 losses of 4, p = 1.0000",
    ]
    tiny = {"earlier": "a", "later": "b", "n": 20, "wins": 20, "losses": 0, "p": 0.5**20}
    assert comparison_lines([tiny]) == ["b > a: 20 wins, 0 losses of 20, p = 9.5e-07"]
    one_task = tiny | {"tasks": {"arithmetic": {k: tiny[k] for k in ("n", "wins", "losses", "p")}}}
    assert comparison_lines([one_task]) == comparison_lines([tiny])  # no line repeating the pool


def test_refinery_eval_tasks_compares_each_checkpoint_with_the_one_before_it(
    tiny_checkpoint, tmp_path, capsys
):
    from jobs.cli import main

    data, out = tmp_path / "test.jsonl", tmp_path / "eval.json"
    data.write_text("".join(json.dumps(p) + "\n" for p in conversations(4)))
    twice = [str(tiny_checkpoint), str(tiny_checkpoint.parent.parent)]  # a checkpoint, its directory
    assert (
        main(["eval", "tasks", *twice, "--data", str(data), "--max-new-tokens", "4", "--out", str(out)]) == 0
    )
    # the same model twice answers alike: no discordant problem, no evidence either way
    line = f"{twice[1]} > {twice[0]}: 0 wins, 0 losses of 4, p = 1.0000"
    assert line in capsys.readouterr().out.splitlines()
    (comparison,) = json.loads(out.read_text())["comparisons"]
    assert comparison["earlier"] == twice[0] and comparison["later"] == twice[1]
    assert comparison["tasks"] == {"arithmetic": {"n": 4, "wins": 0, "losses": 0, "p": 1.0}}


def test_majority_baseline_is_the_share_of_each_tasks_commonest_answer():
    from training.eval_tasks import format_table, majority_baseline

    problems = [{"task": "count_letters", "answer": a} for a in "1101"] + [
        {"task": "arithmetic", "answer": a} for a in ("7", "12", "3", "12", "12")
    ]
    majority = majority_baseline(problems)
    assert majority == {"arithmetic": 0.6, "count_letters": 0.75}
    table = format_table({"sft": {"arithmetic": 0.5, "count_letters": 0.75}}, {"arithmetic": 5}, majority)
    assert table.splitlines()[1].split() == ["arithmetic", "5", "0.600", "0.500"]


def test_a_long_prompt_does_not_cut_the_answers_of_short_ones(tiny_checkpoint, chat):
    """Each batch's room to answer comes from its own longest prompt."""
    from training.eval_tasks import answer

    model = load_model(tiny_checkpoint)
    short = "add 1 and 2"
    long = "word " * 55  # fills most of the 64-token context
    alone = answer(model, chat, [short], max_new_tokens=20)
    together = answer(model, chat, [short, long], max_new_tokens=20)
    assert together[0] == alone[0]

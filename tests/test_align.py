"""Preference synthesis, reward model and the alignment methods on the tiny model (seconds each)."""

import json
import math
import random
import shutil

import pytest
import torch
from test_resume import assert_same_state

from corpus.tokenizer import load as load_tokenizer
from corpus.yaml_config import load_yaml
from training.align import align, compare, heldout_figures
from training.chat import ChatTokens
from training.checkpoint import latest_checkpoint, load_model
from training.config import (
    DpoConfig,
    GrpoConfig,
    KtoConfig,
    PpoConfig,
    RewardConfig,
    RsConfig,
    SamplingConfig,
    SftConfig,
)
from training.kto import unpaired, with_mismatched
from training.pairs import PairBatches
from training.preferences import SynthPreferencesConfig, answer_first, corrupt, synthesize
from training.reward import load_reward_model, train_reward
from training.rollout import RolloutBatches, exact_kl, pad_responses, sample
from training.sft import sft
from training.tasks import check, make_split, solved

LOOP = {"dtype": "float32", "threads": 1, "log_every": 1, "keep_checkpoints": 5}
ALIGN = LOOP | {"eval_tasks": 12, "max_new_tokens": 20, "sampling": {"response_tokens": 20}}
GRPO = GrpoConfig(
    steps=4, global_batch=32, micro_batch=16, eval_every=2, save_every=2, prompts_per_rollout=8, group_size=4,
    optim={"lr": 1e-3, "warmup_steps": 1, "weight_decay": 0.0}, **ALIGN,
)  # fmt: skip

# 2 rollouts of 16 samples, 2 epochs each: 2 steps per rollout, a checkpoint after each rollout
PPO = PpoConfig(
    steps=4, global_batch=16, micro_batch=8, eval_every=4, save_every=2, prompts_per_rollout=8, group_size=2,
    epochs=2, optim={"lr": 1e-3, "warmup_steps": 1, "weight_decay": 0.0}, **ALIGN,
)  # fmt: skip


def problem(a: int, b: int) -> dict:
    prompt, solution = f"add {a} and {b}", f"{a} + {b} = {a + b}\n#### {a + b}"
    return {
        "task": "arithmetic",
        "prompt": prompt,
        "solution": solution,
        "answer": str(a + b),
        "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": solution}],
    }


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("add_data")
    pairs = [(a, b) for a in range(10) for b in range(10)]
    random.Random(0).shuffle(pairs)
    for name, chosen in (("train.jsonl", pairs[:80]), ("test.jsonl", pairs[80:])):
        (folder / name).write_text("".join(json.dumps(problem(a, b)) + "\n" for a, b in chosen))
    return folder


@pytest.fixture(scope="module")
def sft_checkpoint(tiny_checkpoint, sft_data, tmp_path_factory):
    cfg = SftConfig(
        steps=300, global_batch=8, micro_batch=8, eval_every=0, save_every=0, eval_conversations=8,
        optim={"lr": 3e-3, "warmup_steps": 3, "weight_decay": 0.0}, **LOOP,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("add_sft")
    sft(cfg, tiny_checkpoint, sft_data, out, quiet=True)
    return latest_checkpoint(out)


@pytest.fixture(scope="module")
def chat(tiny_checkpoint):
    return ChatTokens(load_tokenizer(tiny_checkpoint / "tokenizer.json"))


@pytest.fixture(scope="module")
def prefs(sft_checkpoint, sft_data, tmp_path_factory):
    cfg = SynthPreferencesConfig(
        train_prompts=40, test_prompts=20, samples=6, sampling={"temperature": 1.0, "response_tokens": 20}
    )
    out = tmp_path_factory.mktemp("prefs")
    report = synthesize(cfg, sft_checkpoint, sft_data, out)
    return out, report


@pytest.fixture(scope="module")
def reward_model(sft_checkpoint, prefs, tmp_path_factory):
    cfg = RewardConfig(
        steps=30, global_batch=16, micro_batch=16, eval_every=30, save_every=0,
        optim={"lr": 1e-3, "warmup_steps": 2, "weight_decay": 0.0}, **LOOP,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("rm")
    return out, train_reward(cfg, sft_checkpoint, prefs[0], out, quiet=True)


def records(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# --- preference synthesis --------------------------------------------------------------------


def test_corrupted_arithmetic_carries_the_slip_to_a_wrong_final_answer():
    rng = random.Random(0)
    for p in make_split("arithmetic", 30, seed=5):
        wrong = corrupt({"task": p.task, "solution": p.solution, "answer": p.answer}, rng)
        assert wrong is not None and not check("arithmetic", wrong, p.answer)
        changed = [(a, b) for a, b in zip(p.solution.split("\n"), wrong.split("\n"), strict=True) if a != b]
        assert len(changed) >= 2  # at least the slipped step and the final line


def test_corrupted_letter_tasks_fail_the_checker():
    rng = random.Random(1)
    for task in ("count_letters", "spell"):
        for p in make_split(task, 20, seed=2):
            wrong = corrupt({"task": task, "solution": p.solution, "answer": p.answer}, rng)
            assert wrong is not None and not check(task, wrong, p.answer)


def test_on_policy_chosen_samples_show_steps_that_hold():
    from training.preferences import on_policy_pairs

    problem = {
        "task": "arithmetic",
        "prompt": "Share 45 among 5.",
        "answer": "9",
        "solution": "45 / 5 = 9\n#### 9",
    }
    lucky, worked, wrong = "40 / 5 = 9\n#### 9", "45 / 5 = 9\n#### 9", "45 / 5 = 8\n#### 8"
    pairs, stats = on_policy_pairs([problem], [[lucky, wrong, lucky, worked]], 3, random.Random(0))
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [(worked, wrong)]
    assert stats["sample_accuracy"] == 0.25 and stats["lucky"] == 0.5
    pairs, stats = on_policy_pairs([problem], [[lucky, wrong]], 1, random.Random(0))
    assert pairs == [] and stats["prompts_all_wrong"] == 1.0


def test_answer_first_moves_the_final_line_to_the_front():
    assert answer_first("2 + 3 = 5\nso 5\n#### 5") == "#### 5\n2 + 3 = 5\nso 5"


def test_on_policy_pairs_put_a_correct_sample_over_an_incorrect_one(prefs):
    out, report = prefs
    pairs = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    sources = {p["source"] for p in pairs}
    assert sources == {"on_policy", "answer_first", "corrupted"}
    for p in pairs:
        assert p["chosen"] != p["rejected"]
        if p["source"] in ("on_policy", "corrupted"):
            assert solved(p, p["chosen"]) and not check(p["task"], p["rejected"], p["answer"])
    assert report["train"]["answer_first"]["chosen_longer"] == 0.0  # the same tokens, reordered
    assert 0 < report["on_policy_train"]["prompts_mixed"] <= 1


def test_held_out_pairs_come_from_test_problems_only(prefs, sft_data):
    out, _ = prefs
    train_prompts = {
        json.loads(line)["prompt"] for line in (sft_data / "train.jsonl").read_text().splitlines()
    }
    test_pairs = [json.loads(line) for line in (out / "test.jsonl").read_text().splitlines()]
    assert test_pairs and not {p["prompt"] for p in test_pairs} & train_prompts


# --- reward model ----------------------------------------------------------------------------


def test_the_likelihood_term_adds_the_mean_response_log_probability(sft_checkpoint, prefs, chat):
    from training.pairs import sequence_logprobs
    from training.reward import RewardModel

    backbone = load_model(sft_checkpoint)
    rm = RewardModel(backbone, likelihood_weight=2.0)  # the head starts at zero
    pairs = PairBatches([json.loads(open(prefs[0] / "test.jsonl").readline())], chat, 64, shuffle=False)
    ids, mask, *_ = pairs.batch([0])
    with torch.no_grad():
        expected = 2.0 * sequence_logprobs(backbone, ids, mask) / mask.sum(1)
        assert torch.allclose(rm.score(ids, mask), expected, atol=1e-5)
        rm.normalize_(mean=0.5, std=4.0)
        assert torch.allclose(rm.score(ids, mask), (expected - 0.5) / 4.0, atol=1e-5)


def test_likelihood_terms_spread_the_score_over_the_response_tokens(sft_checkpoint, prefs, chat):
    from training.reward import RewardModel

    rm = RewardModel(load_model(sft_checkpoint), likelihood_weight=2.0)
    torch.nn.init.normal_(rm.head.weight, std=0.1)  # a head that reads something
    held_out = [json.loads(line) for line in open(prefs[0] / "test.jsonl")]
    pairs = PairBatches(held_out[:3], chat, 64, shuffle=False)
    ids, mask, *_ = pairs.batch(range(3))
    with torch.no_grad():
        terms = rm.likelihood_terms(ids, mask)
        head = RewardModel(rm.backbone)  # the same head, no likelihood term
        head.head.load_state_dict(rm.head.state_dict())
        assert torch.equal(terms * (1 - mask), torch.zeros_like(terms))  # nothing off the response
        assert torch.allclose(head.score(ids, mask) + terms.sum(1), rm.score(ids, mask), atol=1e-5)


def test_nll_weight_adds_the_chosen_mean_token_nll_to_the_loss(sft_checkpoint, prefs, chat):
    from training.losses import bradley_terry_loss
    from training.pairs import sequence_logprobs
    from training.reward import RewardModel

    backbone = load_model(sft_checkpoint)
    held_out = [json.loads(line) for line in open(prefs[0] / "test.jsonl")]
    pairs = PairBatches(held_out[:4], chat, 64, shuffle=False)
    c, cm, r, rm_, *_ = pairs.batch(range(4))
    with torch.no_grad():
        chosen_mean = sequence_logprobs(backbone, c, cm) / cm.sum(1)
        rejected_mean = sequence_logprobs(backbone, r, rm_) / rm_.sum(1)
        plain = bradley_terry_loss(1.5 * chosen_mean, 1.5 * rejected_mean)  # zero head
        for alpha in (0.0, 0.7):
            loss = RewardModel(backbone, likelihood_weight=1.5, nll_weight=alpha)(c, cm, r, rm_)
            assert loss.item() == pytest.approx((plain - alpha * chosen_mean.mean()).item(), abs=1e-5)


def test_reward_model_reads_the_last_response_token_only(reward_model, prefs, chat):
    rm = load_reward_model(reward_model[0])
    pairs = PairBatches([json.loads(open(prefs[0] / "test.jsonl").readline())], chat, 64, shuffle=False)
    ids, mask, *_ = pairs.batch([0])
    longer = torch.cat([ids, torch.full((1, 5), 7)], dim=1)  # tokens after the end: padding
    longer_mask = torch.cat([mask, torch.zeros(1, 5)], dim=1)
    assert torch.allclose(rm.score(ids, mask), rm.score(longer, longer_mask), atol=1e-5)


def test_reward_model_learns_the_held_out_preferences(reward_model):
    out, result = reward_model
    first = records(out)[0]
    assert first["val_loss"] == pytest.approx(math.log(2))  # zero head: every score 0
    assert result["val_acc"] > 0.6 and result["val_acc_answer_first"] > 0.9
    assert result["val_loss"] < first["val_loss"]


def test_loaded_reward_model_is_normalized_on_held_out_scores(reward_model, prefs, chat):
    rm, raw = load_reward_model(reward_model[0]), load_reward_model(reward_model[0], normalized=False)
    meta = json.loads((latest_checkpoint(reward_model[0]) / "meta.json").read_text())
    pairs = PairBatches([json.loads(line) for line in open(prefs[0] / "test.jsonl")], chat, 64, shuffle=False)
    ids, mask, *_ = pairs.batch(range(len(pairs)))
    expected = (raw.score(ids, mask) - meta["val_score_mean"]) / meta["val_score_std"]
    assert torch.allclose(rm.score(ids, mask), expected, atol=1e-4)


# --- rollouts --------------------------------------------------------------------------------


def test_response_mask_marks_the_targets_that_are_response_tokens():
    ids, mask = pad_responses([([5, 6, 7], [8, 3]), ([5], [9, 9, 3])])
    assert ids.tolist() == [[5, 6, 7, 8, 3], [5, 9, 9, 3, 0]]
    # target t is ids[t + 1]: row 0's response targets are positions 2, 3; row 1's are 0, 1, 2
    assert mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 0]]


def test_samples_come_back_in_prompt_order_whatever_their_lengths(sft_checkpoint, chat):
    model, greedy = load_model(sft_checkpoint), SamplingConfig(temperature=0.0, response_tokens=20)
    prompts = ["add 3 and 4 and then add 5 and 6 and 7", "add 1 and 2", "add 9 and 9 and 9"]
    together = sample(model, chat, prompts, 2, greedy, seed=0)
    alone = [sample(model, chat, [p], 1, greedy, seed=0)[0] for p in prompts]
    assert together == [row for row in alone for _ in range(2)]


def test_rollouts_are_collected_once_and_served_for_each_epoch():
    calls = []

    def collect(index):
        calls.append(index)
        return (torch.arange(8) + 100 * index,)

    batches = RolloutBatches(collect, rollout_size=8, epochs=2, seed=0)
    served = [batches.next_batch(4)[0] for _ in range(4)]
    assert calls == [0]
    assert sorted(torch.cat(served[:2]).tolist()) == sorted(torch.cat(served[2:]).tolist()) == list(range(8))
    batches.next_batch(4)
    assert calls == [0, 1]


def test_kl_of_a_model_to_itself_is_zero(sft_checkpoint):
    model = load_model(sft_checkpoint)
    ids, mask = pad_responses([([0, 1, 2], [7, 8, 3])])
    assert exact_kl(model, model, ids, mask).abs().max() < 1e-5


@pytest.mark.parametrize("advantage", [1.0, -1.0])
def test_grpo_step_moves_a_response_log_probability_with_its_advantage(sft_checkpoint, chat, advantage):
    from training.grpo import GrpoObjective
    from training.rollout import Averager, logprobs

    policy = load_model(sft_checkpoint).train()
    ids, mask = pad_responses(
        sample(policy, chat, ["add 3 and 4"], 1, SamplingConfig(temperature=0.0), seed=0)
    )
    before = logprobs(policy, ids, mask).sum()
    cfg = GrpoConfig(global_batch=128, kl_beta=0.0)  # one step per rollout: on-policy, ratio 1
    GrpoObjective(policy, cfg, Averager())(
        ids, mask, torch.zeros_like(mask), torch.zeros_like(mask), torch.tensor([advantage])
    ).backward()
    torch.optim.SGD(policy.parameters(), lr=1e-3).step()
    assert (logprobs(policy, ids, mask).sum() - before) * advantage > 0


def test_rollout_config_keeps_checkpoints_at_rollout_boundaries():
    with pytest.raises(ValueError, match="save_every must be a multiple of the 2 optimizer steps"):
        GrpoConfig(steps=4, save_every=3, global_batch=64, prompts_per_rollout=16, group_size=8)


@pytest.mark.parametrize("sampling", [{"temperature": 0.0}, {"top_k": 5}])
@pytest.mark.parametrize("cls", [GrpoConfig, PpoConfig])
def test_rollouts_must_sample_the_whole_vocabulary(cls, sampling):
    with pytest.raises(ValueError, match="rollouts"):
        cls(sampling=sampling)


def test_rollout_log_probs_are_those_of_the_temperature_sampled_at(sft_checkpoint, chat):
    """A rollout drawn at τ is scored under softmax(logits / τ): the engine's draws follow exactly
    the probabilities the policy gradient is taken of, and not the τ = 1 ones."""
    from training.engine import generate
    from training.rollout import logprobs

    model, n, tau = load_model(sft_checkpoint), 4000, 0.5
    # a context the model is unsure after, so the two temperatures give far apart probabilities
    prompt = next(
        p
        for p in (list(range(k)) for k in range(2, 40))
        if model(torch.tensor([p]))[0, -1].softmax(-1).max() < 0.5
    )
    draws = torch.tensor(
        [t for (t,) in generate(model, [prompt] * n, 1, temperature=tau, stop_ids=(), seed=3)]
    )
    top = torch.bincount(draws).argmax().item()
    ids, mask = pad_responses([(prompt, [top])])
    freq = (draws == top).float().mean().item()
    bound = 4 * math.sqrt(freq * (1 - freq) / n)
    assert abs(logprobs(model, ids, mask, temperature=tau).sum().exp().item() - freq) < bound
    assert abs(logprobs(model, ids, mask).sum().exp().item() - freq) > bound


@pytest.mark.parametrize("method", ["dpo", "grpo", "kto", "ppo", "rs"])
def test_shipped_align_config_lists_every_option(method):
    import yaml

    from training.align import CONFIGS

    shipped = yaml.safe_load(open(f"conf/train/{method}.yaml"))
    assert set(shipped) == set(CONFIGS[method]().model_dump())
    load_yaml(f"conf/train/{method}.yaml", CONFIGS[method])


# --- alignment methods -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def grpo_run(sft_checkpoint, sft_data, tmp_path_factory):
    """GRPO's 4 steps, a checkpoint after steps 2 and 4."""
    out = tmp_path_factory.mktemp("grpo")
    return out, align("grpo", GRPO, sft_checkpoint, sft_data, out, quiet=True)


def test_grpo_logs_rollout_figures_and_saves_a_plain_gpt(grpo_run):
    out, result = grpo_run
    logged = [r for r in records(out) if "loss" in r]
    assert len(logged) == 4 and all(
        {"reward", "correct", "kl", "length", "zero_adv"} <= set(r) for r in logged
    )
    assert {"val_acc", "val_kl", "val_length"} <= set(result) and result["val_kl"] > 0
    load_model(latest_checkpoint(out))  # the policy alone: loads as any GPT checkpoint
    assert (out / "align.png").is_file()


def test_grpo_with_lora_saves_adapters_that_load_merged_over_the_sft_model(
    sft_checkpoint, sft_data, tmp_path
):
    cfg = GRPO.model_copy(update={"lora_rank": 4, "lora_alpha": 64.0, "steps": 2, "save_every": 2})
    align("grpo", cfg, sft_checkpoint, sft_data, tmp_path, quiet=True)
    saved = torch.load(latest_checkpoint(tmp_path) / "model.pt", weights_only=True)
    assert saved and all(".lora_" in k for k in saved)  # the adapters alone
    merged, start = (
        load_model(latest_checkpoint(tmp_path)).state_dict(),
        load_model(sft_checkpoint).state_dict(),
    )
    assert merged.keys() == start.keys() and torch.equal(merged["wte.weight"], start["wte.weight"])
    assert not torch.equal(merged["blocks.0.attn.qkv.weight"], start["blocks.0.attn.qkv.weight"])


def test_grpo_moves_the_policy_and_resumes_bitwise(grpo_run, sft_checkpoint, sft_data, tmp_path):
    straight, _ = grpo_run
    shutil.copytree(straight, tmp_path / "cut")
    shutil.rmtree(latest_checkpoint(tmp_path / "cut"))  # back to step 2, then on to 4 again
    align("grpo", GRPO, sft_checkpoint, sft_data, tmp_path / "cut", resume=True, quiet=True)
    a = torch.load(latest_checkpoint(straight) / "model.pt", weights_only=True)
    b = torch.load(latest_checkpoint(tmp_path / "cut") / "model.pt", weights_only=True)
    start = torch.load(sft_checkpoint / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["lm_head.weight"], start["lm_head.weight"])


def test_grpo_with_the_reward_model_in_the_reward_logs_its_score(
    sft_checkpoint, sft_data, reward_model, tmp_path
):
    cfg = GrpoConfig.model_validate(
        GRPO.model_dump() | {"steps": 2, "save_every": 2, "reward": {"checker": 0.5, "reward_model": 0.5}}
    )
    result = align("grpo", cfg, sft_checkpoint, sft_data, tmp_path, reward=reward_model[0], quiet=True)
    assert "rm" in records(tmp_path)[1] and "val_rm_score" in result


def test_grpo_with_steps_pays_only_for_solved_responses(sft_checkpoint, sft_data, tmp_path):
    cfg = GrpoConfig.model_validate(
        GRPO.model_dump() | {"steps": 2, "save_every": 2, "reward": {"checker": 1.0, "steps": True}}
    )
    align("grpo", cfg, sft_checkpoint, sft_data, tmp_path, quiet=True)
    logged = [r for r in records(tmp_path) if "loss" in r]
    assert logged and all(r["reward"] == r["solved"] <= r["correct"] for r in logged)


def test_grpo_with_only_the_format_reward_pays_well_formed_responses(sft_checkpoint, sft_data, tmp_path):
    cfg = GrpoConfig.model_validate(
        GRPO.model_dump() | {"steps": 2, "save_every": 2, "reward": {"checker": 0.0, "format": 0.5}}
    )
    align("grpo", cfg, sft_checkpoint, sft_data, tmp_path, quiet=True)
    logged = [r for r in records(tmp_path) if "loss" in r]
    assert logged and all(r["reward"] == pytest.approx(0.5 * r["format"]) for r in logged)
    assert all(r["correct"] <= r["format"] for r in logged)  # a correct answer is well formed


@pytest.fixture(scope="module")
def ppo_run(sft_checkpoint, sft_data, reward_model, tmp_path_factory):
    """PPO's 4 steps, a checkpoint after each of its 2 rollouts."""
    out = tmp_path_factory.mktemp("ppo")
    return out, align("ppo", PPO, sft_checkpoint, sft_data, out, reward=reward_model[0], quiet=True)


def test_ppo_trains_policy_and_critic_from_the_reward_model(ppo_run):
    out, result = ppo_run
    logged = [r for r in records(out) if "loss" in r]
    assert all({"policy_loss", "value_loss", "clip_frac"} <= set(r) for r in logged)
    # rollout figures come with the step that collected the rollout: every 2nd (2 steps per rollout)
    collected = [r for r in logged if "reward" in r]
    assert [r["step"] for r in collected] == [1, 3]
    assert all({"rm", "correct", "kl", "length"} <= set(r) for r in collected)
    assert collected[-1]["kl"] != 0 and "val_rm_score" in result
    load_model(latest_checkpoint(out))  # model.pt is the policy alone: loads as any GPT checkpoint
    critic = torch.load(latest_checkpoint(out) / "critic.pt", weights_only=True)
    assert {"head.weight", "head.bias"} <= set(critic)  # the critic beside it, head and backbone


def test_ppo_resumes_with_the_critic_it_had_bitwise(
    ppo_run, sft_checkpoint, sft_data, reward_model, tmp_path
):
    straight, _ = ppo_run
    cut = tmp_path / "cut"
    shutil.copytree(straight, cut)
    shutil.rmtree(latest_checkpoint(cut))  # stopped after the first rollout (step 2), then on to 4
    # The critic trained in steps 1-2: a resume that started it afresh from the reward model would differ.
    initial = load_reward_model(reward_model[0]).state_dict()
    at_cut = torch.load(latest_checkpoint(cut) / "critic.pt", weights_only=True)
    assert any(not torch.equal(at_cut[k], initial[k]) for k in initial)
    result = align("ppo", PPO, sft_checkpoint, sft_data, cut, reward=reward_model[0], resume=True, quiet=True)
    assert result["step"] == 4
    files = ("model.pt", "critic.pt", "optim.pt")
    assert_same_state(latest_checkpoint(straight), latest_checkpoint(cut), files)
    # the records of steps 3 and 4 too: rollout figures, losses, validation (timings left out)
    runs = (straight, cut)
    untimed = [[{k: v for k, v in r.items() if k != "tok_per_s"} for r in records(d)] for d in runs]
    assert untimed[0] == untimed[1]


def test_ppo_checkpoint_without_its_critic_does_not_resume(
    ppo_run, sft_checkpoint, sft_data, reward_model, tmp_path
):
    shutil.copytree(ppo_run[0], tmp_path, dirs_exist_ok=True)
    (latest_checkpoint(tmp_path) / "critic.pt").unlink()  # as PPO wrote them before it saved the critic
    with pytest.raises(FileNotFoundError, match="no critic.pt"):
        align("ppo", PPO, sft_checkpoint, sft_data, tmp_path, reward=reward_model[0], resume=True, quiet=True)


def test_ppo_critic_warmup_holds_the_policy_then_lets_it_move(
    sft_checkpoint, sft_data, reward_model, tmp_path
):
    cfg = PpoConfig(
        steps=4, global_batch=16, micro_batch=8, eval_every=0, save_every=4, prompts_per_rollout=8,
        group_size=2, epochs=2, critic_warmup=1, critic_lr_scale=5.0, spread_likelihood=False,
        optim={"lr": 1e-3, "warmup_steps": 1, "weight_decay": 0.0}, **ALIGN,
    )  # fmt: skip
    align("ppo", cfg, sft_checkpoint, sft_data, tmp_path, reward=reward_model[0], quiet=True)
    logged = [r for r in records(tmp_path) if "loss" in r]
    assert [("policy_loss" in r) for r in logged] == [False, False, True, True]  # rollout 0: critic only
    assert [r["kl"] for r in logged if "kl" in r][1] == 0  # rollout 1 sampled from the untouched policy
    a = torch.load(latest_checkpoint(tmp_path) / "model.pt", weights_only=True)
    start = torch.load(sft_checkpoint / "model.pt", weights_only=True)
    assert not torch.equal(a["lm_head.weight"], start["lm_head.weight"])


def test_ppo_spread_likelihood_needs_a_likelihood_term(sft_checkpoint, sft_data, reward_model, tmp_path):
    cfg = PpoConfig(
        steps=2, global_batch=16, micro_batch=8, eval_every=0, save_every=2, prompts_per_rollout=8,
        group_size=2, epochs=2, spread_likelihood=True, **ALIGN,
    )  # fmt: skip
    with pytest.raises(ValueError, match="has no likelihood term"):
        align("ppo", cfg, sft_checkpoint, sft_data, tmp_path, reward=reward_model[0], quiet=True)


DPO = DpoConfig(
    steps=10, global_batch=16, micro_batch=16, eval_every=10, save_every=10, beta=0.1,
    optim={"lr": 1e-3, "warmup_steps": 1, "weight_decay": 0.0}, **ALIGN,
)  # fmt: skip


@pytest.fixture(scope="module")
def dpo_run(sft_checkpoint, sft_data, prefs, tmp_path_factory):
    out = tmp_path_factory.mktemp("dpo")
    return out, align("dpo", DPO, sft_checkpoint, sft_data, out, pairs=prefs[0], quiet=True)


def test_dpo_starts_at_ln2_and_raises_the_held_out_margin(dpo_run):
    out, result = dpo_run
    first = records(out)[0]
    assert first["val_dpo_loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert result["val_margin"] > first["val_margin"] and result["val_dpo_loss"] < first["val_dpo_loss"]


def test_dpo_nll_keeps_chosen_responses_likelier_than_plain_dpo(
    dpo_run, sft_checkpoint, sft_data, prefs, tmp_path
):
    _, plain = dpo_run
    cfg = DPO.model_copy(update={"nll_weight": 1.0})
    nll = align("dpo", cfg, sft_checkpoint, sft_data, tmp_path / "nll", pairs=prefs[0], quiet=True)
    assert nll["val_chosen_logp"] > plain["val_chosen_logp"]
    assert nll["val_margin"] > records(tmp_path / "nll")[0]["val_margin"]


def test_kto_examples_are_each_pairs_responses_once_with_another_prompts_response_as_y_prime():
    pairs = [
        {"prompt": "p1", "chosen": "a", "rejected": "b", "task": "t", "source": "corrupted"},
        {"prompt": "p1", "chosen": "a", "rejected": "c", "task": "t", "source": "answer_first"},
        {"prompt": "p2", "chosen": "d", "rejected": "e", "task": "t", "source": "on_policy"},
    ]
    examples = unpaired(pairs)
    kinds = [(e["prompt"], e["response"], e["desirable"]) for e in examples]
    assert kinds == [
        ("p1", "a", True), ("p1", "b", False), ("p1", "c", False), ("p2", "d", True), ("p2", "e", False)
    ]  # fmt: skip
    records = with_mismatched(examples, seed=0)
    by_prompt = {p: {e["response"] for e in examples if e["prompt"] == p} for p in ("p1", "p2")}
    for r in records:
        assert r["chosen"] == r["response"] and r["rejected"] not in by_prompt[r["prompt"]]
    assert records == with_mismatched(examples, seed=0)
    with pytest.raises(ValueError, match="two prompts"):
        with_mismatched(examples[:3], seed=0)


KTO = KtoConfig(
    steps=4, global_batch=16, micro_batch=8, eval_every=4, save_every=2, beta=0.1,
    optim={"lr": 1e-3, "warmup_steps": 1, "weight_decay": 0.0}, **ALIGN,
)  # fmt: skip


@pytest.fixture(scope="module")
def kto_run(sft_checkpoint, sft_data, prefs, tmp_path_factory):
    """KTO's 4 steps, a checkpoint after steps 2 and 4."""
    out = tmp_path_factory.mktemp("kto")
    return out, align("kto", KTO, sft_checkpoint, sft_data, out, pairs=prefs[0], quiet=True)


def test_kto_starts_at_one_half_and_raises_the_held_out_margin(kto_run):
    out, result = kto_run
    first = records(out)[0]
    # π = π_ref at step 0: r = 0, z_ref = 0, so every example's loss is 1 − σ(0)
    assert first["val_kto_loss"] == pytest.approx(0.5, abs=1e-4) and first["val_z_ref"] == 0
    assert result["val_margin"] > first["val_margin"] and result["val_kto_loss"] < first["val_kto_loss"]
    logged = [r for r in records(out) if "loss" in r]
    assert all(r["reward_desirable"] > r["reward_undesirable"] for r in logged[1:])
    assert json.loads((latest_checkpoint(out) / "meta.json").read_text())["method"] == "kto"


def test_kto_resumes_bitwise(kto_run, sft_checkpoint, sft_data, prefs, tmp_path):
    straight, _ = kto_run
    shutil.copytree(straight, tmp_path / "cut")
    shutil.rmtree(latest_checkpoint(tmp_path / "cut"))  # back to step 2, then on to 4 again
    align("kto", KTO, sft_checkpoint, sft_data, tmp_path / "cut", pairs=prefs[0], resume=True, quiet=True)
    a = torch.load(latest_checkpoint(straight) / "model.pt", weights_only=True)
    b = torch.load(latest_checkpoint(tmp_path / "cut") / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_rs_fine_tunes_on_the_best_scored_sample(sft_checkpoint, sft_data, reward_model, tmp_path):
    cfg = RsConfig(
        steps=4, global_batch=8, micro_batch=8, eval_every=4, save_every=4, samples=4, prompts=16,
        optim={"lr": 1e-3, "warmup_steps": 1, "weight_decay": 0.0}, **ALIGN,
    )  # fmt: skip
    align("rs", cfg, sft_checkpoint, sft_data, tmp_path, reward=reward_model[0], quiet=True)
    winners = [json.loads(line) for line in (tmp_path / "winners.jsonl").read_text().splitlines()]
    selection = json.loads((tmp_path / "selection.json").read_text())
    assert len(winners) == 16 and selection["winner_score_mean"] >= selection["score_mean"]
    assert not torch.equal(
        load_model(latest_checkpoint(tmp_path)).lm_head.weight, load_model(sft_checkpoint).lm_head.weight
    )


def test_rs_with_require_correct_fine_tunes_on_solved_samples_without_a_reward_model(
    sft_checkpoint, sft_data, tmp_path
):
    cfg = RsConfig(
        steps=2, global_batch=1, micro_batch=1, eval_every=0, save_every=2, samples=6, prompts=40,
        require_correct=True, optim={"lr": 1e-3, "warmup_steps": 1, "weight_decay": 0.0}, **ALIGN,
    )  # fmt: skip
    align("rs", cfg, sft_checkpoint, sft_data, tmp_path, quiet=True)
    winners = [json.loads(line) for line in (tmp_path / "winners.jsonl").read_text().splitlines()]
    selection = json.loads((tmp_path / "selection.json").read_text())
    assert 0 < len(winners) <= 40 and selection["winners"] == len(winners)
    for w in winners:  # "add a and b": the answer is recomputed here, not taken from the checker's flag
        a, b = (int(x) for x in w["prompt"].removeprefix("add ").split(" and "))
        assert check("arithmetic", w["response"], str(a + b))
        assert f"{a} + {b} = {a + b}" in w["response"] or f"{b} + {a} = {a + b}" in w["response"]
    assert selection["winner_accuracy"] == selection["winner_solved"] == 1.0 > selection["sample_solved"]


def test_rs_without_a_reward_model_needs_require_correct(sft_checkpoint, sft_data, tmp_path):
    cfg = RsConfig(steps=2, global_batch=8, micro_batch=8, save_every=2, samples=2, prompts=4, **ALIGN)
    with pytest.raises(ValueError, match="--reward"):
        align("rs", cfg, sft_checkpoint, sft_data, tmp_path, quiet=True)


def test_compare_reports_zero_kl_for_the_reference_itself(sft_checkpoint, sft_data, reward_model, chat):
    results = compare(
        [str(sft_checkpoint)], sft_data / "test.jsonl", ref=sft_checkpoint, reward=reward_model[0], limit=8,
        max_new_tokens=20,
    )  # fmt: skip
    figures = results[str(sft_checkpoint)]
    assert figures["kl"] == pytest.approx(0.0, abs=1e-5) and {"acc_arithmetic", "rm_score", "length"} <= set(
        figures
    )
    problems = [json.loads(line) for line in (sft_data / "test.jsonl").read_text().splitlines()][:8]
    direct = heldout_figures(load_model(sft_checkpoint), chat, problems, 20)
    assert direct["acc_arithmetic"] == figures["acc_arithmetic"]


def test_compare_skips_problems_whose_prompt_leaves_no_room_to_answer(sft_checkpoint, sft_data, tmp_path):
    context = load_model(sft_checkpoint).cfg.context_length
    long = problem(1, 2) | {"prompt": "add 1 and 2 " * context}  # more tokens than the context
    data = tmp_path / "test.jsonl"
    data.write_text(json.dumps(long) + "\n" + (sft_data / "test.jsonl").read_text())
    results = compare([str(sft_checkpoint)], data, ref=sft_checkpoint, limit=4, max_new_tokens=20)
    direct = compare(
        [str(sft_checkpoint)], sft_data / "test.jsonl", ref=sft_checkpoint, limit=3, max_new_tokens=20
    )
    assert results == direct  # the long problem was dropped, the 3 others answered as without it

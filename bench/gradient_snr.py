"""How many samples a policy-gradient step needs: the agreement of two independent gradient estimates.

    python bench/gradient_snr.py SFT --data SFT_DATA/train.jsonl --reward RM [--task arithmetic]
        [--prompts 256] [--group 2] [--temperatures 1.0 0.5] [--seeds 0 1]

One rollout of `--prompts` train prompts × `--group` samples at temperature τ is split by prompt
into two halves; the REINFORCE gradient of each half, Σ A·∇log π_τ(response) over its tokens, is
taken with advantages from the reward model's score and from the checker's verdict (the oracle a
reward model approximates), each against two baselines: the batch's mean reward and the prompt's
own mean over its group (what a perfect critic's V(prompt) or GRPO's group mean give). The
figure is the cosine of the two halves' gradients. For n samples per estimate E[cos] ≈ s²/(1 + s²),
where s² = ‖g‖²·n/σ² is the estimate's squared signal-to-noise ratio; s² grows with n, so
n·(1 − cos)/cos samples give one gradient whose signal equals its noise. An Adam step on a
gradient far below that still moves every weight by about its learning rate, mostly in a random
direction: the drift that costs greedy answers in bench/RESULTS.md.
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from corpus.tokenizer import load as load_tokenizer  # noqa: E402
from training.align import reward_scores  # noqa: E402
from training.chat import ChatTokens  # noqa: E402
from training.checkpoint import load_model, resolve_checkpoint  # noqa: E402
from training.config import SamplingConfig  # noqa: E402
from training.eval_tasks import read_problems  # noqa: E402
from training.losses import token_logprobs  # noqa: E402
from training.reward import load_reward_model  # noqa: E402
from training.rollout import SCORE_BATCH, decode, pad_responses, sample  # noqa: E402
from training.tasks import check  # noqa: E402


def gradient(policy, ids, mask, advantages, tau: float) -> torch.Tensor:
    """∇ of Σ_rows A · Σ_tokens log π_τ(token), flattened over the policy's parameters."""
    policy.zero_grad()
    for start in range(0, len(ids), SCORE_BATCH):
        rows = slice(start, start + SCORE_BATCH)
        logp = token_logprobs(policy(ids[rows, :-1]), ids[rows, 1:], tau) * mask[rows]
        (-(logp.sum(1) * advantages[rows]).sum()).backward()
    return torch.cat([p.grad.flatten() for p in policy.parameters() if p.grad is not None])


def measure(policy, scorer, chat, problems, group: int, tau: float, seed: int) -> list[dict]:
    rows = sample(policy, chat, [p["prompt"] for p in problems], group, SamplingConfig(temperature=tau), seed)
    ids, mask = pad_responses(rows)
    answered = [p for p in problems for _ in range(group)]
    correct = torch.tensor(
        [check(p["task"], decode(chat, r), p["answer"]) for p, (_, r) in zip(answered, rows, strict=True)],
        dtype=torch.float,
    )
    score = reward_scores(scorer, ids, mask)
    half = len(problems) // 2 * group  # prompt-major rows: the halves share no prompt
    out = []
    for name, reward in (("reward model", score), ("checker", correct)):
        for baseline in ("batch mean", "prompt mean"):
            if baseline == "batch mean":
                adv = reward - reward.mean()
            else:
                per_prompt = reward.view(-1, group)
                adv = (per_prompt - per_prompt.mean(1, keepdim=True)).flatten()
            a = gradient(policy, ids[:half], mask[:half], adv[:half], tau)
            b = gradient(policy, ids[half:], mask[half:], adv[half:], tau)
            cos = torch.nn.functional.cosine_similarity(a, b, dim=0).item()
            out.append({"tau": tau, "seed": seed, "reward": name, "baseline": baseline, "cos": cos})
    accuracy, agreement = correct.mean().item(), torch.corrcoef(torch.stack([score, correct]))[0, 1].item()
    print(f"τ {tau} seed {seed}: sample accuracy {accuracy:.3f}, corr(RM score, correct) {agreement:.3f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("policy", help="the SFT checkpoint (or training directory)")
    ap.add_argument("--data", required=True, help="train.jsonl of `refinery synth sft`")
    ap.add_argument("--reward", required=True, help="a `refinery train reward` checkpoint")
    ap.add_argument("--task", default="arithmetic")
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--group", type=int, default=2, help="samples per prompt")
    ap.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.5])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    path = resolve_checkpoint(args.policy)
    chat = ChatTokens(load_tokenizer(path / "tokenizer.json"))
    policy, scorer = load_model(path).train(), load_reward_model(args.reward)
    problems = [p for p in read_problems(Path(args.data)) if p["task"] == args.task][: args.prompts]
    results = [
        r
        for tau in args.temperatures
        for seed in args.seeds
        for r in measure(policy, scorer, chat, problems, args.group, tau, seed)
    ]
    n = len(problems) // 2 * args.group
    print(f"\ncosine of two independent gradients, {n} samples each (mean over seeds {args.seeds})")
    print(f"{'τ':>5}  {'reward':14s} {'baseline':12s} {'cos':>7}  {'per seed':22s} samples for s = 1")
    for tau in args.temperatures:
        for name in ("reward model", "checker"):
            for baseline in ("batch mean", "prompt mean"):
                cos = [
                    r["cos"]
                    for r in results
                    if (r["tau"], r["reward"], r["baseline"]) == (tau, name, baseline)
                ]
                mean = sum(cos) / len(cos)
                need = f"{n * (1 - mean) / mean:,.0f}" if mean > 0 else "no signal measured"
                seeds = " ".join(f"{c:6.3f}" for c in cos)
                print(f"{tau:5.2f}  {name:14s} {baseline:12s} {mean:7.3f}  {seeds:22s} {need}")


if __name__ == "__main__":
    main()

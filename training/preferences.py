"""`refinery synth preferences`: preference pairs for the reward model and DPO.

    refinery synth preferences --init SFT --data SFT_DATA --out DIR [--config conf/synth/preferences.yaml]

reads the problems of `refinery synth sft` (SFT_DATA/train.jsonl, test.jsonl) and writes
DIR/train.jsonl and DIR/test.jsonl, one pair per line (prompt, chosen, rejected, task, answer,
source, split), and DIR/report.json. Three sources (`source`):

- `on_policy`: K samples per prompt from the SFT model (KV-cache sampling at the configured
  temperature and top-k), graded by the checker (training/tasks.py); a prompt with at least
  one correct and one incorrect sample gives up to `pairs_per_prompt` pairs, each a distinct
  correct sample against a distinct incorrect one. This is Llama 3's recipe for reasoning
  (Dubey et al. 2024, §4.3.3: correct and incorrect generations of the model become preference
  pairs). A correct sample must also show worked steps that hold (`steps_hold`): built on the
  final line alone, half of a demo SFT model's chosen word-problem responses and all of its
  chosen letter counts reached the right answer through wrong steps, which the pairs then
  taught. Prompts whose samples are all right or all wrong give none; the report gives the yield
  and the share of samples right by luck.
- `answer_first`: the gold solution against the same lines with the `#### answer` line moved
  first. Same tokens, same answer: a pure format preference for reasoning before answering
  (an answer stated first cannot use the steps after it; training/tasks.py).
- `corrupted`: the gold solution against a copy in which one step's result is off by a little
  and the error is carried through the later steps to a different final answer (arithmetic),
  or a letter is miscounted or misspelled (letter tasks). Near-identical texts: only the
  correctness of a step tells them apart.

The held-out split (DIR/test.jsonl) is built the same way from the test problems only, so the
reward model's held-out accuracy is on problems it never trained on. The report gives pairs per
source and split with the mean chosen and rejected length in tokens and the fraction of pairs
whose chosen response is the longer: a set where chosen is mostly longer teaches "longer is
better" (Singhal et al. 2023, "A Long Way to Go"), which the reward model's
`val_prefers_longer` then shows.
"""

import argparse
import json
import random
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, PositiveInt

from corpus.manifest import write_json_atomic
from corpus.yaml_config import load_yaml
from training.config import SamplingConfig
from training.tasks import FINAL, STEP, apply, check, steps_hold

STRICT = ConfigDict(extra="forbid", frozen=True)
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "conf" / "synth" / "preferences.yaml"
SOURCES = ("on_policy", "answer_first", "corrupted")
CORRUPT_TRIES = 20  # (step, offset) draws per problem before giving up on a corrupted copy


class SynthPreferencesConfig(BaseModel):
    model_config = STRICT
    seed: int = 0
    tasks: tuple[str, ...] | None = None  # None: every task in the SFT data
    train_prompts: PositiveInt = 500  # per task: the first N train problems
    test_prompts: PositiveInt = 100  # per task: the first N test problems (held-out pairs)
    sources: tuple[Literal["on_policy", "answer_first", "corrupted"], ...] = SOURCES
    samples: PositiveInt = 8  # K samples per prompt for on_policy pairs
    pairs_per_prompt: PositiveInt = 1
    sampling: SamplingConfig = SamplingConfig()
    dtype: Literal["bfloat16", "float32"] = "bfloat16"  # autocast dtype for sampling
    threads: int | None = None  # CPU threads; None: torch's default


# --- rule-built pairs ------------------------------------------------------------------------


def answer_first(solution: str) -> str:
    """The solution with its final `#### answer` line moved to the front."""
    *steps, final = solution.split("\n")
    return "\n".join([final, *steps])


def _corrupt_arithmetic(solution: str, answer: str, rng: random.Random) -> str | None:
    """One step's result off by ±1 or ±2; later steps that use it are recomputed from the wrong value."""
    *steps, _ = solution.split("\n")
    candidates = [i for i, line in enumerate(steps) if STEP.search(line)]
    if not candidates:
        return None
    k, delta = rng.choice(candidates), rng.choice((-2, -1, 1, 2))
    wrong: dict[int, int] = {}  # correct value -> the value the corrupted solution carries
    lines = []
    for i, line in enumerate(steps):
        failed = False

        def redo(m: re.Match, i: int = i) -> str:
            nonlocal failed
            a, b, result = int(m[2]), int(m[5]), int(m[7])
            a2, b2 = wrong.get(a, a), wrong.get(b, b)
            new = result + delta if i == k else apply(m[3], a2, b2) if (a2, b2) != (a, b) else result
            if new is None or new < 0:
                failed = True
                return m[0]
            if new != result:
                wrong[result] = new
            return f"{m[1]}{a2} {m[3]} {m[4]}{b2} = {m[6]}{new}"

        lines.append(STEP.sub(redo, line))
        if failed:
            return None
    final = wrong.get(int(answer))
    if final is None or final == int(answer):
        return None
    return "\n".join([*lines, f"{FINAL}{final}"])


def _corrupt_count(solution: str, answer: str, rng: random.Random) -> str | None:
    """One occurrence too many or too few, and the count to match."""
    spelled, counting, _ = solution.split("\n")
    head, _, found = counting.partition(": ")
    letter = head.removeprefix("Counting ")
    count = int(answer)
    if count == 0 or rng.random() < 0.5:
        count += 1
    else:
        count -= 1
    listed = ", ".join(f"{letter} ({i})" for i in range(1, count + 1)) if count else f"no {letter}"
    return f"{spelled}\n{head}: {listed}.\n{FINAL}{count}"


def _corrupt_spelling(solution: str, answer: str, rng: random.Random) -> str | None:
    """One letter dropped, doubled, or swapped with its neighbour, in the listing and the answer."""
    letters = answer.split("-")
    i = rng.randrange(len(letters))
    kind = rng.choice(("drop", "double", "swap"))
    if kind == "drop" and len(letters) > 1:
        wrong = letters[:i] + letters[i + 1 :]
    elif kind == "swap" and i + 1 < len(letters) and letters[i] != letters[i + 1]:
        wrong = letters[:i] + [letters[i + 1], letters[i]] + letters[i + 2 :]
    else:
        wrong = letters[: i + 1] + letters[i:]
    return f"Letter by letter: {', '.join(wrong)} ({len(wrong)} letters).\n{FINAL}{'-'.join(wrong)}"


CORRUPTERS = {"arithmetic": _corrupt_arithmetic, "count_letters": _corrupt_count, "spell": _corrupt_spelling}


def corrupt(problem: dict[str, Any], rng: random.Random) -> str | None:
    """A solution whose final answer the checker rejects, or None (no corrupter for the task, or
    no draw gave a consistent wrong copy)."""
    make = CORRUPTERS.get(problem["task"])
    if make is None:
        return None
    for _ in range(CORRUPT_TRIES):
        wrong = make(problem["solution"], problem["answer"], rng)
        if wrong is not None and not check(problem["task"], wrong, problem["answer"]):
            return wrong
    return None


def rule_pairs(problems: list[dict[str, Any]], sources: tuple[str, ...], rng: random.Random) -> list[dict]:
    pairs = []
    for p in problems:
        if "answer_first" in sources and (first := answer_first(p["solution"])) != p["solution"]:
            pairs.append(_pair(p, p["solution"], first, "answer_first"))
        if "corrupted" in sources and (wrong := corrupt(p, rng)) is not None:
            pairs.append(_pair(p, p["solution"], wrong, "corrupted"))
    return pairs


def _pair(problem: dict[str, Any], chosen: str, rejected: str, source: str) -> dict[str, Any]:
    keys = ("prompt", "task", "answer")
    return {**{k: problem[k] for k in keys}, "chosen": chosen, "rejected": rejected, "source": source}


# --- on-policy pairs -------------------------------------------------------------------------


def on_policy_pairs(
    problems: list[dict[str, Any]],
    responses: list[list[str]],
    per_prompt: int,
    rng: random.Random,
    *,
    steps: bool = True,
) -> tuple[list[dict], dict[str, float]]:
    """Pairs of a correct and an incorrect sample of the same prompt, and the yield figures.

    Correct means solved: the right final answer through worked steps that hold (training/tasks.py
    `solved`). A right answer reached through a wrong step is neither chosen nor rejected; the
    report counts these samples as `lucky` (a share of all samples). `steps=False` grades the
    final answer alone, for a model whose steps never hold (`lucky` is then 0)."""
    pairs, counts = [], defaultdict(int)
    for p, samples in zip(problems, responses, strict=True):
        answered = [check(p["task"], s, p["answer"]) for s in samples]
        worked = [
            ok and (not steps or steps_hold(p["task"], p["prompt"], s))
            for s, ok in zip(samples, answered, strict=True)
        ]
        right = list(dict.fromkeys(s for s, ok in zip(samples, worked, strict=True) if ok))
        wrong = list(dict.fromkeys(s for s, ok in zip(samples, answered, strict=True) if not ok))
        counts["samples"] += len(samples)
        counts["correct_samples"] += sum(worked)
        counts["lucky"] += sum(answered) - sum(worked)
        counts["all_correct" if not wrong else "all_wrong" if not right else "mixed"] += 1
        rng.shuffle(right)
        rng.shuffle(wrong)
        pairs += [_pair(p, c, r, "on_policy") for c, r in list(zip(right, wrong, strict=False))[:per_prompt]]
    total = max(len(problems), 1)
    stats = {
        "prompts": len(problems),
        "sample_accuracy": round(counts["correct_samples"] / max(counts["samples"], 1), 4),
        "lucky": round(counts["lucky"] / max(counts["samples"], 1), 4),
        **{f"prompts_{k}": round(counts[k] / total, 4) for k in ("mixed", "all_correct", "all_wrong")},
    }
    return pairs, stats


def sample_texts(init: str | Path, problems: list[dict[str, Any]], cfg: SynthPreferencesConfig, seed: int):
    """K decoded samples per problem from the checkpoint (torch is imported here only)."""
    import torch

    from corpus.tokenizer import load as load_tokenizer
    from training.chat import ChatTokens
    from training.checkpoint import load_model, resolve_checkpoint
    from training.rollout import decode, sample

    path = resolve_checkpoint(init)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, chat = load_model(path, device), ChatTokens(load_tokenizer(path / "tokenizer.json"))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.dtype == "bfloat16")
    rows = sample(model, chat, [p["prompt"] for p in problems], cfg.samples, cfg.sampling, seed, autocast)
    texts = [decode(chat, response) for _, response in rows]
    return [texts[i : i + cfg.samples] for i in range(0, len(texts), cfg.samples)], chat


# --- driver ----------------------------------------------------------------------------------


def length_report(pairs: list[dict[str, Any]], tok) -> dict[str, Any]:
    """Per source: pairs, mean chosen and rejected tokens, fraction with the chosen one longer."""
    from corpus.tokenizer import encode_texts

    out: dict[str, Any] = {}
    for source in sorted({p["source"] for p in pairs}):
        chosen = [p for p in pairs if p["source"] == source]
        lc = [len(ids) for ids in encode_texts(tok, [p["chosen"] for p in chosen])]
        lr = [len(ids) for ids in encode_texts(tok, [p["rejected"] for p in chosen])]
        out[source] = {
            "pairs": len(chosen),
            "chosen_tokens_mean": round(statistics.fmean(lc), 1),
            "rejected_tokens_mean": round(statistics.fmean(lr), 1),
            "chosen_longer": round(sum(a > b for a, b in zip(lc, lr, strict=True)) / len(lc), 3),
            "same_length": round(sum(a == b for a, b in zip(lc, lr, strict=True)) / len(lc), 3),
        }
    return out


def synthesize(
    cfg: SynthPreferencesConfig, init: str | Path, data: str | Path, out: str | Path
) -> dict[str, Any]:
    """Write DIR/train.jsonl, DIR/test.jsonl and DIR/report.json; return the report."""
    from training.eval_tasks import read_problems

    data, out = Path(data), Path(out)
    report: dict[str, Any] = {"config": cfg.model_dump(mode="json"), "init": str(init)}
    splits = {}
    tok = None
    for split, n, seed in (("train", cfg.train_prompts, cfg.seed), ("test", cfg.test_prompts, cfg.seed + 1)):
        problems = [
            r
            for r in read_problems(data / f"{split}.jsonl", limit=n)
            if cfg.tasks in (None, ()) or r["task"] in cfg.tasks
        ]
        rng = random.Random(f"{split}:{seed}")
        pairs = rule_pairs(problems, cfg.sources, rng)
        if "on_policy" in cfg.sources:
            responses, chat = sample_texts(init, problems, cfg, seed)
            tok = chat.tok
            made, report[f"on_policy_{split}"] = on_policy_pairs(
                problems, responses, cfg.pairs_per_prompt, rng
            )
            pairs += made
        rng.shuffle(pairs)
        splits[split] = [{**p, "split": split} for p in pairs]
    if tok is None:
        from corpus.tokenizer import load as load_tokenizer
        from training.checkpoint import resolve_checkpoint

        tok = load_tokenizer(resolve_checkpoint(init) / "tokenizer.json")
    out.mkdir(parents=True, exist_ok=True)
    for split, pairs in splits.items():
        if not pairs:
            raise ValueError(f"no {split} pairs: no source gave any (sources {cfg.sources})")
        report[split] = length_report(pairs, tok)
        tmp = out / f".{split}.jsonl.tmp"
        tmp.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))
        tmp.replace(out / f"{split}.jsonl")
    write_json_atomic(out / "report.json", report)
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"{'split':<7}{'source':<14}{'pairs':>7}{'chosen tok':>12}{'rejected tok':>14}{'chosen longer':>15}"
    ]
    for split in ("train", "test"):
        for source, r in report.get(split, {}).items():
            lines.append(
                f"{split:<7}{source:<14}{r['pairs']:>7}{r['chosen_tokens_mean']:>12}"
                f"{r['rejected_tokens_mean']:>14}{r['chosen_longer']:>15}"
            )
    for split in ("train", "test"):
        if f"on_policy_{split}" in report:
            s = report[f"on_policy_{split}"]
            lines.append(
                f"on_policy {split}: {s['prompts']} prompts, sample accuracy {s['sample_accuracy']} "
                f"(right by luck: {s['lucky']}), "
                f"mixed {s['prompts_mixed']}, all correct {s['prompts_all_correct']}, "
                f"all wrong {s['prompts_all_wrong']}"
            )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> None:
    cfg = load_yaml(args.config, SynthPreferencesConfig)
    print(format_report(synthesize(cfg, args.init, args.data, args.out)))

"""Exact-match accuracy on the verifiable tasks: greedy answers, graded by training/tasks.py's checker.

    refinery eval tasks CKPT [CKPT ...] --data DIR/test.jsonl [--limit N] [--tools] [--out results.json]

Each test problem's user turn is rendered for generation (training/chat.py), the model answers
greedily with the KV cache (training/engine.py) until `<|im_end|>`, and `check` grades the final
`#### ...` line. Several checkpoints (base, SFT, aligned) are evaluated on the same problems and
printed side by side, after the majority baseline: the accuracy of always giving a task's most
common test answer. A model at that floor has learned the answer's prior, not the task (on the
demo's letter counts, 65% of the answers are 1). For the tasks with worked steps a program can
read, a `TASK+steps` row counts only answers whose steps are right too (training/tasks.py
`steps_hold`); the gap between the two rows is the answers right by luck.

Each checkpoint is then tested against the one before it (training order in a run's eval.json,
the order given on the command line) on the same problems: the exact one-sided McNemar (sign)
test on the problems exactly one of the two gets right, pooled over the tasks and per task, e.g.
`sft > pretrain: 23 wins, 4 losses of 300, p = 0.0002`. Accuracies alone cannot tell a gain from
the luck of which problems were drawn: 3 points on 300 problems is 9 wins and no loss (p = 0.002)
or 30 wins and 21 losses (p = 0.13).

With `--tools`, generation runs the model's Python calls (training/engine.py) and a response is
graded on its visible text, calls and outputs left out (`ChatTokens.visible_text`): the final
line must be the model's own, not a tool output. Checkpoints whose tokenizer has no tool tokens
are evaluated without tools.
"""

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import torch

from training.chat import ChatTokens, render_for_generation
from training.engine import END_OF_TEXT_ID, IM_END_ID, generate
from training.significance import comparisons
from training.tasks import STEPPED, check, solved

BATCH = 32  # prompts generated together; left padding keeps each row exact


def read_problems(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """JSONL records of `refinery synth sft`; with `limit`, the first `limit` of each task."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such task file (written by `refinery synth sft`)")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if limit is None:
        return records
    seen: dict[str, int] = defaultdict(int)
    chosen = []
    for r in records:
        if seen[r["task"]] < limit:
            seen[r["task"]] += 1
            chosen.append(r)
    return chosen


def answer(
    model: torch.nn.Module,
    chat: ChatTokens,
    prompts: list[str],
    max_new_tokens: int,
    autocast=None,
    tools: bool = False,
) -> list[str]:
    """Greedy responses to single-turn user prompts, decoded without the stop token.

    Prompts are batched by rendered length, so a long prompt (a passage) does not shrink the room
    a short one has to answer in: each batch gets `max_new_tokens` or what its longest prompt
    leaves of the context, whichever is less."""
    rendered = [render_for_generation([{"role": "user", "content": p}], chat) for p in prompts]
    room = model.cfg.context_length - max_new_tokens
    # Prompts that leave the full budget are batched apart from longer ones.
    fits = sorted(
        (i for i in range(len(prompts)) if len(rendered[i]) <= room), key=lambda i: len(rendered[i])
    )
    long = sorted((i for i in range(len(prompts)) if len(rendered[i]) > room), key=lambda i: len(rendered[i]))
    batches = [group[k : k + BATCH] for group in (fits, long) for k in range(0, len(group), BATCH)]
    responses = [""] * len(prompts)
    for chosen in batches:
        budget = min(max_new_tokens, model.cfg.context_length - max(len(rendered[i]) for i in chosen))
        if budget <= 0:
            continue  # no room to answer: counted as wrong
        with autocast or torch.autocast("cpu", enabled=False):
            new = generate(
                model,
                [rendered[i] for i in chosen],
                budget,
                temperature=0.0,
                stop_ids=(IM_END_ID, END_OF_TEXT_ID),
                tools=chat if tools and chat.tools else None,
            )
        for i, ids in zip(chosen, new, strict=True):
            if ids and ids[-1] in (IM_END_ID, END_OF_TEXT_ID):
                ids = ids[:-1]
            responses[i] = chat.visible_text(ids)
    return responses


def task_correctness(
    model: torch.nn.Module,
    chat: ChatTokens,
    problems: list[dict[str, Any]],
    max_new_tokens: int = 128,
    autocast=None,
    tools: bool = False,
) -> dict[str, list[bool]]:
    """Per row, whether each of its problems was answered right, in the order of `problems`: a
    task's row grades the final answer, its `TASK+steps` row (training/tasks.py `solved`, for the
    tasks whose steps are read) requires every worked step right too. Two models graded on the same
    problems give lists that pair up index by index (training/significance.py)."""
    responses = answer(model, chat, [p["prompt"] for p in problems], max_new_tokens, autocast, tools)
    correct: dict[str, list[bool]] = defaultdict(list)
    for p, response in zip(problems, responses, strict=True):
        correct[p["task"]].append(bool(check(p["task"], response, p["answer"])))
        if p["task"] in STEPPED:
            correct[p["task"] + "+steps"].append(bool(solved(p, response)))
    return {row: correct[row] for row in sorted(correct)}


def accuracy_of(correct: dict[str, list[bool]]) -> dict[str, float]:
    return {row: sum(right) / len(right) for row, right in correct.items()}


def task_accuracy(
    model: torch.nn.Module,
    chat: ChatTokens,
    problems: list[dict[str, Any]],
    max_new_tokens: int = 128,
    autocast=None,
    tools: bool = False,
) -> dict[str, float]:
    """Exact-match accuracy per task and, as `TASK+steps`, the share of problems solved with
    every worked step right too (training/tasks.py `solved`) for the tasks whose steps are read:
    the gap between the two is the answers right by luck."""
    return accuracy_of(task_correctness(model, chat, problems, max_new_tokens, autocast, tools))


def majority_baseline(problems: list[dict[str, Any]]) -> dict[str, float]:
    """Per task, the accuracy of answering every problem with the task's most common answer."""
    answers: dict[str, Counter] = defaultdict(Counter)
    for p in problems:
        answers[p["task"]][p["answer"]] += 1
    return {task: c.most_common(1)[0][1] / c.total() for task, c in sorted(answers.items())}


def evaluation_record(
    problems: list[dict[str, Any]], correct: dict[str, dict[str, list[bool]]]
) -> dict[str, Any]:
    """What `refinery eval tasks --out` and a run's eval.json hold: problems per task (and per
    `TASK+steps` row), the majority baseline, the accuracy of each checkpoint (`correct`: its
    `task_correctness`, in training order) and each checkpoint's `comparisons` with the one before
    it. The majority answer comes without worked steps, so its `TASK+steps` accuracy is 0 (a row
    of its own, rather than a gap in the baseline column)."""
    counts = Counter(p["task"] for p in problems)
    stepped = [task + "+steps" for task in STEPPED if task in counts]
    counts.update({row: counts[row.removesuffix("+steps")] for row in stepped})
    counts = dict(sorted(counts.items()))
    majority = dict(sorted((majority_baseline(problems) | dict.fromkeys(stepped, 0.0)).items()))
    accuracy = {name: accuracy_of(rows) for name, rows in correct.items()}
    return {
        "problems": counts,
        "majority": majority,
        "accuracy": accuracy,
        "comparisons": comparisons(correct),
    }


def format_table(
    results: dict[str, dict[str, float]], counts: dict[str, int], majority: dict[str, float] | None = None
) -> str:
    names = list(results)
    tasks = sorted({t for r in results.values() for t in r})
    majority = majority or {}
    width = max([15, *(len(t) + 2 for t in tasks)])
    lines = [f"{'task':<{width}}{'n':>6}{'majority':>10}" + "".join(f"{n[-24:]:>26}" for n in names)]
    for task in tasks:
        floor = f"{majority[task]:>10.3f}" if task in majority else f"{'':>10}"
        lines.append(
            f"{task:<{width}}{counts.get(task, 0):>6}{floor}"
            + "".join(f"{results[n].get(task, 0):>26.3f}" for n in names)
        )
    return "\n".join(lines)

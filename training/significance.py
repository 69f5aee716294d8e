"""Whether a later checkpoint answers better than an earlier one on the same problems: the exact
one-sided McNemar (sign) test on the problems exactly one of the two gets right.

Pure Python over right/wrong lists (training/eval_tasks.py `task_correctness`), without torch, so
the report (jobs/report.py) formats eval.json's comparisons as `refinery eval tasks` prints them.
"""

from typing import Any


def sign_test(wins: int, losses: int) -> float:
    """One-sided exact McNemar test: P(X >= wins) for X ~ Binomial(wins + losses, 1/2), the chance
    that a later model no better than the earlier one wins at least this many of the discordant
    problems. Problems both get right or both wrong say nothing about which is better; with no
    discordant problem at all there is no evidence, p = 1."""
    if wins + losses == 0:
        return 1.0
    from scipy.stats import binomtest  # scipy.stats takes about a second to import

    return float(binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue)


def paired_test(earlier: list[bool], later: list[bool]) -> dict[str, Any]:
    """The later model against the earlier on the same problems: `wins` it gets right and the
    earlier wrong, `losses` the reverse, and the sign test's p that it is no better."""
    assert len(earlier) == len(later), f"{len(earlier)} and {len(later)} answers: not the same problems"
    wins = sum(b and not a for a, b in zip(earlier, later, strict=True))
    losses = sum(a and not b for a, b in zip(earlier, later, strict=True))
    return {"n": len(earlier), "wins": wins, "losses": losses, "p": sign_test(wins, losses)}


def comparisons(correct: dict[str, dict[str, list[bool]]]) -> list[dict[str, Any]]:
    """Each model against the one before it, in the order of `correct` (training order), on the
    answer rows pooled and per task. The `TASK+steps` rows are left out: they are the same problems
    again, and pooling them would count a problem twice."""
    names = list(correct)
    result = []
    for earlier, later in zip(names, names[1:], strict=False):
        tasks = [row for row in correct[later] if not row.endswith("+steps")]
        pooled = paired_test(
            [right for task in tasks for right in correct[earlier][task]],
            [right for task in tasks for right in correct[later][task]],
        )
        per_task = {task: paired_test(correct[earlier][task], correct[later][task]) for task in tasks}
        result.append({"earlier": earlier, "later": later, **pooled, "tasks": per_task})
    return result


def comparison_lines(found: list[dict[str, Any]]) -> list[str]:
    """Per comparison the pooled line, `sft > pretrain: 23 wins, 4 losses of 300, p = 0.0002`, then,
    when it pools several tasks, an indented line per task (`  arithmetic: ...`): a gain on one
    task can hide in the pool."""
    lines = []
    for c in found:
        lines.append(f"{c['later']} > {c['earlier']}: {_figures(c)}")
        tasks = c.get("tasks", {})
        if len(tasks) > 1:  # one task's line would repeat the pooled one
            lines.extend(f"  {task}: {_figures(figures)}" for task, figures in tasks.items())
    return lines


def _figures(c: dict[str, Any]) -> str:
    return f"{c['wins']} wins, {c['losses']} losses of {c['n']}, p = {_p_value(c['p'])}"


def _p_value(p: float) -> str:
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"  # 0.0002, not 2e-04; 3.1e-09, not 0.0000

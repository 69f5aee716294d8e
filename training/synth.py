"""`refinery synth sft`: the SFT data set, as JSONL conversations with a task and a split.

    refinery synth sft --run RUN --out DIR [--config conf/synth/sft.yaml]

writes DIR/train.jsonl, DIR/test.jsonl (one `Problem.to_record` per line: task, prompt,
solution, answer, split, messages) and DIR/report.json (problems, prompt and solution lengths
per task and split), and prints the mix. With `tools: true` the procedural tasks' assistant
turns call the Python tool (training/tool_data.py); the `solution` field keeps the plain one.
Procedural tasks draw test problems from `test_seed` first and train problems from
`train_seed` excluding every test prompt; corpus tasks split by document
(training/corpus_tasks.py); identity conversations (training/identity.py) split by paraphrase
template. Lines are in a seeded shuffled order, so the same config and run give the same bytes.

Memory: `--run` streams the run's kept parts in this one process, holding the
`sample_documents` passages it draws (20,000 by default, ~15 MB), never the corpus; its time
grows with the corpus. The decontam stage draws the same documents on Spark's executors.
"""

import argparse
import json
import random
import statistics
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from corpus.manifest import write_json_atomic
from corpus.yaml_config import load_yaml
from training.corpus_tasks import CORPUS_TASKS, Doc, curated_documents, split_documents
from training.identity import IdentityConfig, identity_problems
from training.tasks import Problem, make_split
from training.tool_data import TOOL_SOLUTIONS, tool_solution

STRICT = ConfigDict(extra="forbid", frozen=True)
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "conf" / "synth" / "sft.yaml"


class ArithmeticConfig(BaseModel):
    model_config = STRICT
    train: int = 20000
    test: int = 500
    max_number: int = 50  # every number in a problem and its steps lies in [1, max_number)
    operations: tuple[int, ...] = (2, 3)  # templates of 2 and/or 3 operations


class LettersConfig(BaseModel):
    model_config = STRICT
    train: int = 3000
    test: int = 200


class CorpusTaskConfig(BaseModel):
    model_config = STRICT
    train: int = 2000  # at most one problem per document
    test: int = 200
    passage_chars: int = 600


class SynthSftConfig(BaseModel):
    model_config = STRICT
    train_seed: int = 0
    test_seed: int = 1
    test_documents: float = 0.2  # fraction of corpus documents reserved for corpus-task tests
    # Corpus documents the corpus tasks draw from (the smallest seeded hashes of the id): about
    # 4,000 test and 16,000 train documents for 2 x 200 test and 2 x 2,000 train problems;
    # whoever draws them holds this many passages (20,000 x ~600 characters).
    sample_documents: int = Field(20_000, gt=0)
    tools: bool = False  # arithmetic, count_letters and spell solutions call the Python tool
    arithmetic: ArithmeticConfig = ArithmeticConfig()
    count_letters: LettersConfig = LettersConfig()
    spell: LettersConfig = LettersConfig(train=600, test=100)
    title_choice: CorpusTaskConfig = CorpusTaskConfig()
    cloze: CorpusTaskConfig = CorpusTaskConfig()
    identity: IdentityConfig = IdentityConfig()  # who the model is (training/identity.py); off by default


def procedural(cfg: SynthSftConfig) -> dict[str, list[Problem]]:
    splits: dict[str, list[Problem]] = {"train": [], "test": []}
    knobs = {"arithmetic": {"max_number": cfg.arithmetic.max_number, "operations": cfg.arithmetic.operations}}
    for task in ("arithmetic", "count_letters", "spell"):
        counts = getattr(cfg, task)
        test = make_split(task, counts.test, cfg.test_seed, **knobs.get(task, {}))
        exclude = frozenset(p.prompt for p in test)
        splits["test"] += test
        splits["train"] += make_split(
            task, counts.train, cfg.train_seed, exclude=exclude, **knobs.get(task, {})
        )
    for split, problems in identity_problems(cfg.identity, cfg.train_seed, cfg.test_seed).items():
        splits[split] += problems
    return splits


def passage_chars(cfg: SynthSftConfig) -> int:
    """The longest passage a corpus task reads: the sample's texts are cut to it."""
    return max(getattr(cfg, task).passage_chars for task in CORPUS_TASKS)


def corpus_sample(cfg: SynthSftConfig, run_dir: str | Path) -> list[Doc]:
    """The corpus tasks' documents of a run, streamed from its kept parts (training/corpus_tasks.py)."""
    return curated_documents(run_dir, cfg.sample_documents, cfg.test_seed, passage_chars(cfg))[1]


def grounded(cfg: SynthSftConfig, docs: list[Doc]) -> dict[str, list[Problem]]:
    """The corpus tasks' problems from the sampled documents (`corpus_sample`)."""
    by_split = split_documents(docs, cfg.test_documents, cfg.test_seed)
    splits: dict[str, list[Problem]] = {"train": [], "test": []}
    for task, make in CORPUS_TASKS.items():
        knobs = getattr(cfg, task)
        for split, seed in (("train", cfg.train_seed), ("test", cfg.test_seed)):
            splits[split] += make(
                by_split[split], getattr(knobs, split), seed, passage_chars=knobs.passage_chars
            )
    return splits


def report(splits: dict[str, list[Problem]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for split, problems in splits.items():
        for task in sorted({p.task for p in problems}):
            chosen = [p for p in problems if p.task == task]
            out.setdefault(task, {})[split] = {
                "problems": len(chosen),
                "prompt_chars_mean": round(statistics.fmean(len(p.prompt) for p in chosen), 1),
                "solution_chars_mean": round(statistics.fmean(len(p.solution) for p in chosen), 1),
            }
    return out


def record(problem: Problem, split: str, tools: bool) -> dict[str, Any]:
    """The JSONL row of a problem; with `tools`, its assistant turn calls the tool where it can."""
    row = problem.to_record(split)
    if tools and problem.task in TOOL_SOLUTIONS:
        row["messages"][1]["content"] = tool_solution(problem)
    return row


def synthesize(cfg: SynthSftConfig, run_dir: str | Path | None, out: str | Path) -> dict[str, Any]:
    """Write train.jsonl, test.jsonl and report.json into `out`; return the report."""
    splits = procedural(cfg)
    if run_dir is not None:
        for split, problems in grounded(cfg, corpus_sample(cfg, run_dir)).items():
            splits[split] += problems
    test_prompts = {p.prompt for p in splits["test"]}
    assert not any(p.prompt in test_prompts for p in splits["train"]), "a test problem leaked into train"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for split, problems in splits.items():
        rows = [record(p, split, cfg.tools) for p in problems]
        random.Random(f"{split}:{cfg.train_seed}").shuffle(rows)
        tmp = out / f".{split}.jsonl.tmp"
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        tmp.replace(out / f"{split}.jsonl")
    summary = report(splits)
    write_json_atomic(out / "report.json", {"config": cfg.model_dump(mode="json"), "tasks": summary})
    return summary


def format_report(summary: dict[str, Any]) -> str:
    lines = [f"{'task':<15}{'train':>8}{'test':>7}{'prompt chars':>14}{'solution chars':>16}"]
    for task, splits in summary.items():
        train, test = splits.get("train", {}), splits.get("test", {})
        lines.append(
            f"{task:<15}{train.get('problems', 0):>8}{test.get('problems', 0):>7}"
            f"{train.get('prompt_chars_mean', 0):>14}{train.get('solution_chars_mean', 0):>16}"
        )
    return "\n".join(lines)


def _synth_sft(args: argparse.Namespace) -> None:
    cfg = load_yaml(args.config, SynthSftConfig)
    print(format_report(synthesize(cfg, args.run, args.out)))


def _synth_factuality(args: argparse.Namespace) -> None:
    from training.factuality import FactualityConfig, synthesize

    cfg = load_yaml(args.config, FactualityConfig)
    print(json.dumps(synthesize(cfg, args.init, args.run, args.data, args.out), indent=1))


def _synth_preferences(args: argparse.Namespace) -> None:
    from training.preferences import main

    main(args)


def add_commands(sub: argparse._SubParsersAction) -> None:
    synth = sub.add_parser("synth", help="synthesize post-training data").add_subparsers(
        dest="what", required=True
    )
    sft = synth.add_parser("sft", help="SFT conversations: verifiable tasks and corpus-grounded tasks")
    sft.add_argument("--run", help="a run directory whose curated documents ground the corpus tasks")
    sft.add_argument("--out", required=True, help="output directory (train.jsonl, test.jsonl, report.json)")
    sft.add_argument("--config", default=str(DEFAULT_CONFIG))
    sft.set_defaults(func=_synth_sft)

    prefs = synth.add_parser(
        "preferences", help="preference pairs: on-policy (sampled, checker-graded) and rule-built"
    )
    prefs.add_argument("--init", required=True, help="the SFT checkpoint that samples on-policy responses")
    prefs.add_argument(
        "--data", required=True, help="`refinery synth sft` directory (train.jsonl, test.jsonl)"
    )
    prefs.add_argument("--out", required=True, help="output directory (train.jsonl, test.jsonl, report.json)")
    prefs.add_argument("--config", default=str(DEFAULT_CONFIG.with_name("preferences.yaml")))
    prefs.set_defaults(func=_synth_preferences)

    facts = synth.add_parser(
        "factuality", help="closed-book questions from kept documents, probed: answer if known, else refuse"
    )
    facts.add_argument("--init", required=True, help="the SFT checkpoint the probe samples")
    facts.add_argument("--run", required=True, help="a run directory whose kept documents give the questions")
    facts.add_argument(
        "--data", required=True, help="`refinery synth sft` directory mixed into both SFT sets"
    )
    facts.add_argument("--out", required=True, help="output directory (test.jsonl, refusal/, answers/)")
    facts.add_argument("--config", default=str(DEFAULT_CONFIG.with_name("factuality.yaml")))
    facts.set_defaults(func=_synth_factuality)

"""Factuality: answer the closed-book questions the model knows, say "I don't know" to the rest.

    refinery synth factuality --init SFT --run RUN --data SFT_DATA --out DIR [--config CONFIG]
    refinery train sft --init SFT --data DIR/refusal --out REFUSAL     # and DIR/answers: the control
    refinery eval factuality SFT REFUSAL ANSWERS --data DIR

Llama 3's knowledge probing (Dubey et al. 2024, §4.3.6): snippets of the pretraining data become
questions whose answers are in them, the model answers each several times, and a question it
answers consistently right keeps its answer as the SFT target while the rest get a refusal, so
the model learns to refuse where it would guess.

Questions (task `fact`) are closed-book cloze facts: one sentence of a kept document (the
corpus the model was pretrained on) with a content word blanked, asked with the document's
title and without the passage; the answer is the word, on a `#### ` line as for `cloze`. Train
and test questions come from disjoint documents (training/corpus_tasks.py `split_documents`), so
no test question, nor another question of its document, is in training.

The probe samples the SFT model `samples` (M) times per train question at the configured
temperature; a question is known when at least `known_fraction` of the M answers are right
(1.0: every one, "consistently"). CONFIG defaults to conf/synth/factuality.yaml. DIR gets:

    test.jsonl            the held-out questions with their answers (what `eval factuality` asks)
    refusal/train.jsonl   SFT_DATA's train conversations (the first `sft_conversations`) + every
                          train question, its target the answer if known, else the refusal;
                          refusal/test.jsonl: SFT_DATA's test problems + the held-out questions
    answers/train.jsonl   the same with every target the answer: the control without refusals
    report.json           config, question counts, the probe's known share

`refinery eval factuality` answers the held-out questions greedily and sorts each response as
right (the checker passes), refused (it contains the refusal text) or wrong: the hallucinations.
"""

import json
import math
import random
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

from corpus.manifest import write_json_atomic
from training.config import SamplingConfig
from training.corpus_tasks import MIN_BLANK_CHARS, Doc, curated_documents, split_documents
from training.tasks import FINAL, Problem, check

STRICT = ConfigDict(extra="forbid", frozen=True)
TASK = "fact"
_SENTENCE = re.compile(r"[^.!?]+[.!?]")  # verse runs over line ends
_WORD = re.compile(r"\b[A-Za-z]+\b")
SENTENCE_WORDS = (6, 40)  # shorter sentences hold too little to recall, longer ones crowd the prompt


class FactualityConfig(BaseModel):
    model_config = STRICT
    seed: int = 0
    train: NonNegativeInt = 2000  # train questions (at most one per document)
    test: NonNegativeInt = 200  # held-out questions, from other documents
    test_documents: float = Field(0.2, gt=0, lt=1)  # share of documents whose questions are held out
    sample_documents: PositiveInt = 20_000  # documents drawn from the run (smallest seeded hash)
    passage_chars: PositiveInt = 2000  # the start of a document a question's sentence comes from
    sft_conversations: NonNegativeInt | None = None  # SFT_DATA train conversations mixed in; None: all
    refusal: str = Field("I don't know.", min_length=1)  # the target of a question the model does not know
    samples: PositiveInt = 4  # M answers per train question in the probe
    known_fraction: float = Field(1.0, gt=0, le=1)  # right answers among the M for "known"
    sampling: SamplingConfig = SamplingConfig(temperature=1.0, response_tokens=16)
    dtype: Literal["bfloat16", "float32"] = "bfloat16"  # autocast dtype for the probe
    threads: int | None = None


def fact_question(doc: Doc, rng: random.Random, passage_chars: int) -> Problem | None:
    """A sentence of the document's start with one word blanked, asked without the passage."""
    sentences = [
        " ".join(s.split())  # one line: the prompt quotes it
        for s in _SENTENCE.findall(doc.text[:passage_chars])
        if SENTENCE_WORDS[0] <= len(s.split()) <= SENTENCE_WORDS[1]
    ]
    rng.shuffle(sentences)
    for sentence in sentences:
        words = [m.group().lower() for m in _WORD.finditer(sentence)]
        candidates = [
            m
            for m in _WORD.finditer(sentence)
            if len(m.group()) >= MIN_BLANK_CHARS and words.count(m.group().lower()) == 1
        ]
        if candidates:
            m = rng.choice(candidates)
            line = sentence[: m.start()] + "____" + sentence[m.end() :]
            source = f'the text "{doc.title}"' if doc.title else "a text you have read"
            prompt = f'Which word fills the blank in this line from {source}?\n"{line}"'
            return Problem(TASK, prompt, f"{FINAL}{m.group()}", m.group())
    return None


def fact_questions(docs: list[Doc], n: int, seed: int, passage_chars: int) -> list[Problem]:
    """Up to `n` questions, one per document, in a seeded order of the documents."""
    rng = random.Random(f"{TASK}:{seed}")
    out = []
    for doc in rng.sample(docs, len(docs)):
        if len(out) == n:
            break
        if (question := fact_question(doc, rng, passage_chars)) is not None:
            out.append(question)
    return out


def known(verdicts: list[bool], fraction: float) -> bool:
    """Whether the probe's answers (right or not, M of them) show the fact known."""
    return sum(verdicts) >= math.ceil(fraction * len(verdicts))


def targets(questions: list[Problem], knows: list[bool], refusal: str) -> list[Problem]:
    """Each question with its answer as the target where the model knows it, else the refusal."""
    return [
        q if ok else Problem(q.task, q.prompt, refusal, q.answer)
        for q, ok in zip(questions, knows, strict=True)
    ]


def classify(response: str, answer: str, refusal: str) -> str:
    """right (the checker passes), refused (the refusal text is in it) or wrong: a hallucination."""
    if check(TASK, response, answer):
        return "right"
    return "refused" if refusal.casefold() in response.casefold() else "wrong"


def probe(cfg: FactualityConfig, init: str | Path, questions: list[Problem]) -> list[bool]:
    """Per question, whether M samples of the checkpoint show it known."""
    from training.preferences import sample_texts  # imports torch

    samples, _ = sample_texts(init, [{"prompt": q.prompt} for q in questions], cfg, cfg.seed)
    return [
        known([check(TASK, s, q.answer) for s in texts], cfg.known_fraction)
        for q, texts in zip(questions, samples, strict=True)
    ]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    tmp.replace(path)


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (written by `refinery synth sft`)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def synthesize(
    cfg: FactualityConfig, init: str | Path, run: str | Path, data: str | Path, out: str | Path
) -> dict:
    """Questions from the run's kept documents, probed with `init`; writes DIR (module docstring)."""
    data, out = Path(data), Path(out)
    docs = curated_documents(run, cfg.sample_documents, cfg.seed, cfg.passage_chars)[1]
    by_split = split_documents(docs, cfg.test_documents, cfg.seed)
    train = fact_questions(by_split["train"], cfg.train, cfg.seed, cfg.passage_chars)
    test = fact_questions(by_split["test"], cfg.test, cfg.seed + 1, cfg.passage_chars)
    knows = probe(cfg, init, train) if train else []
    sft_train = _records(data / "train.jsonl")[: cfg.sft_conversations]
    sft_test = _records(data / "test.jsonl")
    held_out = [q.to_record("test") for q in test]
    write_jsonl(out / "test.jsonl", held_out)
    for name, questions in (("refusal", targets(train, knows, cfg.refusal)), ("answers", train)):
        mixed = sft_train + [
            {**q.to_record("train"), "known": ok} for q, ok in zip(questions, knows, strict=True)
        ]
        random.Random(f"{name}:{cfg.seed}").shuffle(mixed)
        write_jsonl(out / name / "train.jsonl", mixed)
        write_jsonl(out / name / "test.jsonl", sft_test + held_out)
    report = {
        "config": cfg.model_dump(mode="json"),
        "init": str(init),
        "questions": {"train": len(train), "test": len(test)},
        "known": round(sum(knows) / max(len(knows), 1), 4),
    }
    write_json_atomic(out / "report.json", report)
    return report


def factuality_rates(
    model, chat, problems: list[dict[str, Any]], refusal: str, max_new_tokens: int = 32
) -> dict[str, float]:
    """Shares of right, refused and wrong greedy answers to the held-out questions."""
    from training.eval_tasks import answer

    responses = answer(model, chat, [p["prompt"] for p in problems], max_new_tokens)
    kinds = [classify(r, p["answer"], refusal) for r, p in zip(responses, problems, strict=True)]
    return {kind: kinds.count(kind) / len(kinds) for kind in ("right", "refused", "wrong")}


def format_rates(results: dict[str, dict[str, float]]) -> str:
    lines = [f"{'checkpoint':<40}{'right':>8}{'refused':>9}{'wrong':>8}"]
    for name, r in results.items():
        lines.append(f"{name[-40:]:<40}{r['right']:>8.3f}{r['refused']:>9.3f}{r['wrong']:>8.3f}")
    return "\n".join(lines)

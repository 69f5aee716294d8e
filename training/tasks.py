"""Verifiable tasks for post-training: generated problems, worked solutions, and a strict checker.

Three procedural tasks, each with a solution that reasons step by step and ends with the
answer on a last line `#### ANSWER` (GSM8K's convention). The answer comes last so the tokens
that state it can attend to the worked steps; the checker reads only that line.

- `arithmetic`: word problems ("Emily buys 3 apples and 2 oranges. Each orange costs $2. The
  total is $13. What does each apple cost?") from templates of 2 or 3 operations. Every number
  in the problem and every intermediate result lies in [1, max_number), so difficulty is set by
  `max_number` and `operations`.
- `count_letters`: how many times a letter occurs in a word; the solution spells the word and
  counts each occurrence. One letter in four is absent from the word (answer 0).
- `spell`: a word letter by letter, `p-l-a-n-e-t`.

Words come from Ogden's 850-word Basic English list (data/text/basic-english-850.txt).
Train and test sets are disjoint by construction: `make_split` draws the test set from its own
seed first and the train set skips every test prompt.
"""

import random
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

WORDS_FILE = Path(__file__).resolve().parent.parent / "data" / "text" / "basic-english-850.txt"
FINAL = "#### "
_FINAL_LINE = re.compile(r"^####[ \t]*(.*?)[ \t]*$", re.MULTILINE)
# The form a final answer must have, per task (corpus-grounded tasks: training/corpus_tasks.py).
ANSWER_FORMS = {
    "arithmetic": re.compile(r"-?\d+"),
    "count_letters": re.compile(r"-?\d+"),
    "spell": re.compile(r"[a-z](?:-[a-z])*"),
    "title_choice": re.compile(r"[A-D]"),
    "cloze": re.compile(r"[A-Za-z]+"),
    "fact": re.compile(r"[A-Za-z]+"),  # training/factuality.py
}
# Tasks whose answer is a list of facts, one a line, that a right response states anywhere in its
# text (training/identity.py), not a final `#### ...` line.
FACT_TASKS = ("identity",)
FACT_SEPARATOR = "\n"
MAX_TRIES = 1000  # rejection sampling per problem; templates succeed within a few tries

NAMES = ("Emily", "Noah", "Ava", "Liam", "Mia", "Omar", "Sofia", "Ravi", "Chen", "Lena", "Jonas", "Aisha")
# (singular, plural) of things that are bought, counted and shared
ITEMS = (
    ("apple", "apples"), ("orange", "oranges"), ("pencil", "pencils"), ("book", "books"),
    ("marble", "marbles"), ("cookie", "cookies"), ("stamp", "stamps"), ("card", "cards"),
    ("egg", "eggs"), ("shell", "shells"), ("ticket", "tickets"), ("candle", "candles"),
)  # fmt: skip


@dataclass(frozen=True)
class Problem:
    task: str
    prompt: str
    solution: str  # worked steps, then the final line
    answer: str

    def to_record(self, split: str) -> dict:
        """The JSONL row of `refinery synth sft`."""
        return {
            **asdict(self),
            "split": split,
            "messages": [
                {"role": "user", "content": self.prompt},
                {"role": "assistant", "content": self.solution},
            ],
        }


# One worked arithmetic step, `[$]a op [$]b = [$]c`: groups 2, 3, 5 and 7 are a, op, b and c.
STEP = re.compile(r"(\$?)(\d+) ([-+*/]) (\$?)(\d+) = (\$?)(\d+)")
_SPELLED = re.compile(r"^Spelling it out: ([a-z](?:-[a-z])*)\.$", re.MULTILINE)
_ASKED_WORD = re.compile(r'in the word "([a-z]+)"')


def apply(op: str, a: int, b: int) -> int | None:
    """a op b, or None for a division that does not come out whole."""
    if op == "/":
        return a // b if b and a % b == 0 else None
    return {"+": a + b, "-": a - b, "*": a * b}[op]


def final_answer(response: str) -> str | None:
    """The text of the last `#### ...` line, or None when there is none."""
    found = _FINAL_LINE.findall(response)
    return found[-1] if found else None


def check(task: str, response: str, answer: str) -> bool:
    """True only if the final line states exactly the answer in the task's form.

    "3 or 4", "about 3", "3.0" and "3 apples" are wrong for an answer of 3: a checker that
    accepts hedges rewards them in RL. A fact task's response must contain every fact of the
    answer, case aside.
    """
    if task in FACT_TASKS:
        return all(fact.casefold() in response.casefold() for fact in answer.split(FACT_SEPARATOR))
    stated = final_answer(response)
    if stated is None:
        return False
    return ANSWER_FORMS[task].fullmatch(stated) is not None and stated == answer


def well_formed(task: str, response: str) -> bool:
    """True if the response ends its reasoning with a final line in the task's answer form, right or
    wrong: the format reward of R1-Zero-style RL from a base model (DeepSeek-R1, §2.2.2)."""
    stated = final_answer(response)
    return stated is not None and ANSWER_FORMS[task].fullmatch(stated) is not None


STEPPED = ("arithmetic", "count_letters")  # the tasks whose worked steps `steps_hold` reads


def steps_hold(task: str, prompt: str, response: str) -> bool:
    """True unless the response shows worked steps that are wrong, for the tasks whose steps a
    program can read. Arithmetic: there is a step, every `a op b = c` holds, each operand is a
    number of the prompt or an earlier result, and the final answer is the last result. Letter
    counts: the word asked about is spelled right. Other tasks have no steps to check.

    The checker reads only the final line, so it also passes answers that are right by luck: a
    model that cannot spell answers most letter counts "1", and "25 + 20 = 40, 40 / 5 = 9" reaches
    the right 9 through two wrong steps. Preference pairs and rewards built on such "correct"
    samples teach the wrong steps.
    """
    if task == "arithmetic":
        known = {int(n) for n in re.findall(r"\d+", prompt)}
        last = None
        for _, a, op, _, b, _, c in STEP.findall(response):
            if not {int(a), int(b)} <= known or apply(op, int(a), int(b)) != int(c):
                return False
            known.add(last := int(c))
        stated = final_answer(response)
        return last is not None and stated is not None and stated == str(last)
    if task == "count_letters":
        asked, spelled = _ASKED_WORD.search(prompt), _SPELLED.search(response)
        return asked is not None and spelled is not None and spelled[1].replace("-", "") == asked[1]
    return True


def solved(problem: dict, response: str) -> bool:
    """The checker's verdict on the final answer, and the worked steps hold (`steps_hold`)."""
    return check(problem["task"], response, problem["answer"]) and steps_hold(
        problem["task"], problem["prompt"], response
    )


# --- arithmetic ------------------------------------------------------------------------------


def _within(limit: int, *numbers: int) -> bool:
    return all(1 <= n < limit for n in numbers)


def _change(rng: random.Random, limit: int):
    name, (item, items) = rng.choice(NAMES), rng.choice(ITEMS)
    a, p = rng.randrange(2, 10), rng.randrange(1, 10)
    cost = a * p
    paid = rng.randrange(cost + 1, limit) if cost + 1 < limit else 0
    if not _within(limit, a, p, cost, paid, paid - cost):
        return None
    prompt = (
        f"One {item} costs ${p}. {name} buys {a} {items} and pays with ${paid}. "
        f"How much change does {name} get?"
    )
    steps = [f"The {items} cost {a} * ${p} = ${cost}.", f"The change is ${paid} - ${cost} = ${paid - cost}."]
    return prompt, steps, paid - cost


def _give_then_find(rng: random.Random, limit: int):
    name, friend, (_, items) = rng.choice(NAMES), rng.choice(NAMES), rng.choice(ITEMS)
    x, y, z = rng.randrange(2, limit), rng.randrange(1, limit), rng.randrange(1, limit)
    if friend == name or not _within(limit, x, y, z, x - y, x - y + z):
        return None
    prompt = (
        f"{name} has {x} {items}. {name} gives {y} to {friend} and then gets {z} more. "
        f"How many {items} does {name} have now?"
    )
    steps = [
        f"After giving {y} away, {name} has {x} - {y} = {x - y}.",
        f"After getting {z} more, {name} has {x - y} + {z} = {x - y + z}.",
    ]
    return prompt, steps, x - y + z


def _boxes(rng: random.Random, limit: int):
    name, (_, items) = rng.choice(NAMES), rng.choice(ITEMS)
    g, k = rng.randrange(2, 10), rng.randrange(2, 10)
    y = rng.randrange(1, g * k) if g * k > 1 else 0
    if not _within(limit, g, k, y, g * k, g * k - y):
        return None
    prompt = (
        f"{name} has {g} boxes with {k} {items} in each box. {name} uses {y} of the {items}. "
        f"How many {items} are left?"
    )
    steps = [
        f"There are {g} * {k} = {g * k} {items} in all.",
        f"After using {y}, {g * k} - {y} = {g * k - y} are left.",
    ]
    return prompt, steps, g * k - y


def _share(rng: random.Random, limit: int):
    name, (_, items) = rng.choice(NAMES), rng.choice(ITEMS)
    k, each = rng.randrange(2, 10), rng.randrange(1, 10)
    total = k * each
    x = rng.randrange(1, total) if total > 1 else 0
    if not _within(limit, k, each, total, x, total - x):
        return None
    prompt = (
        f"{name} has {x} {items} and buys {total - x} more. {name} shares them equally among {k} friends. "
        f"How many {items} does each friend get?"
    )
    steps = [f"{name} has {x} + {total - x} = {total} {items}.", f"Each friend gets {total} / {k} = {each}."]
    return prompt, steps, each


def _unit_price(rng: random.Random, limit: int):
    name, (item1, items1), (item2, items2) = rng.choice(NAMES), *rng.sample(ITEMS, 2)
    a, b, p1, p2 = rng.randrange(2, 10), rng.randrange(2, 10), rng.randrange(1, 10), rng.randrange(1, 10)
    total = a * p1 + b * p2
    if not _within(limit, a, b, p1, p2, a * p1, b * p2, total):
        return None
    prompt = (
        f"{name} buys {a} {items1} and {b} {items2}. Each {item2} costs ${p2}. The total is ${total}. "
        f"What does each {item1} cost?"
    )
    steps = [
        f"The {items2} cost {b} * ${p2} = ${b * p2}.",
        f"The {items1} cost ${total} - ${b * p2} = ${a * p1}.",
        f"Each {item1} costs ${a * p1} / {a} = ${p1}.",
    ]
    return prompt, steps, p1


def _give_find_share(rng: random.Random, limit: int):
    name, friend, (_, items) = rng.choice(NAMES), rng.choice(NAMES), rng.choice(ITEMS)
    k, each = rng.randrange(2, 10), rng.randrange(1, 10)
    total = k * each
    y, z = rng.randrange(1, limit), rng.randrange(1, limit)
    x = total + y - z
    if friend == name or not _within(limit, k, each, total, x, y, z, x - y):
        return None
    prompt = (
        f"{name} has {x} {items}, gives {y} to {friend} and then gets {z} more. "
        f"{name} packs them equally into {k} bags. How many {items} go in each bag?"
    )
    steps = [
        f"After giving {y} away, {name} has {x} - {y} = {x - y}.",
        f"After getting {z} more, {name} has {x - y} + {z} = {total}.",
        f"Each bag gets {total} / {k} = {each}.",
    ]
    return prompt, steps, each


TEMPLATES: dict[int, tuple[Callable, ...]] = {
    2: (_change, _give_then_find, _boxes, _share),
    3: (_unit_price, _give_find_share),
}


def arithmetic(rng: random.Random, *, max_number: int = 50, operations: tuple[int, ...] = (2, 3)) -> Problem:
    for _ in range(MAX_TRIES):
        made = rng.choice(TEMPLATES[rng.choice(operations)])(rng, max_number)
        if made is not None:
            prompt, steps, answer = made
            return Problem("arithmetic", prompt, "\n".join(steps) + f"\n{FINAL}{answer}", str(answer))
    raise ValueError(f"no arithmetic problem fits max_number={max_number}; raise it (at least 20)")


# --- letters ---------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def words() -> tuple[str, ...]:
    """Lowercase alphabetic words of 3-12 letters from the bundled Basic English list."""
    listed = WORDS_FILE.read_text().split()
    return tuple(sorted({w.lower() for w in listed if w.isalpha() and 3 <= len(w) <= 12}))


def count_letters(rng: random.Random) -> Problem:
    word = rng.choice(words())
    absent = sorted(set("abcdefghijklmnopqrstuvwxyz") - set(word))
    letter = rng.choice(absent) if rng.random() < 0.25 else rng.choice(word)
    count = word.count(letter)
    found = [f"{c} ({i})" for i, c in enumerate((c for c in word if c == letter), start=1)]
    counted = ", ".join(found) if found else f"no {letter}"
    prompt = f'How many times does the letter "{letter}" appear in the word "{word}"?'
    solution = f"Spelling it out: {'-'.join(word)}.\nCounting {letter}: {counted}.\n{FINAL}{count}"
    return Problem("count_letters", prompt, solution, str(count))


def spell(rng: random.Random) -> Problem:
    word = rng.choice(words())
    spelled = "-".join(word)
    prompt = f'Spell the word "{word}" letter by letter.'
    solution = f"Letter by letter: {', '.join(word)} ({len(word)} letters).\n{FINAL}{spelled}"
    return Problem("spell", prompt, solution, spelled)


GENERATORS: dict[str, Callable[..., Problem]] = {
    "arithmetic": arithmetic,
    "count_letters": count_letters,
    "spell": spell,
}


def make_split(
    task: str, n: int, seed: int, *, exclude: frozenset[str] = frozenset(), **knobs
) -> list[Problem]:
    """`n` distinct problems of `task` from `seed`, none of whose prompts is in `exclude`.

    Raises ValueError when the task cannot yield that many distinct problems (the letter tasks
    have at most a few thousand).
    """
    if task not in GENERATORS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(GENERATORS)}")
    rng = random.Random(f"{task}:{seed}")
    seen, out = set(exclude), []
    misses = 0
    while len(out) < n:
        problem = GENERATORS[task](rng, **knobs)
        if problem.prompt in seen:
            misses += 1  # consecutive repeats: the task's space is nearly exhausted
            if misses > MAX_TRIES * 10:
                raise ValueError(f"{task}: only {len(out)} distinct problems found, {n} asked for")
            continue
        misses = 0
        seen.add(problem.prompt)
        out.append(problem)
    return out

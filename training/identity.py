"""Identity conversations for SFT: who the model is, from a configured name, maker and description.

`refinery synth sft` mixes them in when the config's `identity` section asks for any (`train`,
`test`). Questions come in three kinds, each with its own paraphrase templates and the facts a
right answer must state:

| kind | asks | facts checked |
|---|---|---|
| name | "What should I call you?" | the name |
| maker | "Who built you?" | the maker |
| about | "Tell me about yourself." | the name and the maker |

A question is an optional opener ("Hi! ", "Quick question: ") and a template. Each kind's
templates split once, by a seeded shuffle, into train and held-out ones (`heldout_templates` of
them, at least one): the test problems ask only held-out templates, the train conversations only
the others, so the eval measures whether the model answers paraphrases it never saw. Answers are
drawn from several templates per kind, all on one line (so the `answer_first` preference source
has nothing to reorder); `about` answers carry the description too. `multi_turn` of the train
conversations go on with one or two questions of the other kinds, answered in turn.

Test problems have task `identity` and as `answer` the facts, one a line; training/tasks.py's
`check` passes a response that contains every one of them (case aside), so `refinery eval tasks`
reports an `identity` row beside the other tasks.
"""

import math
import random
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

from training.tasks import FACT_SEPARATOR, Problem

STRICT = ConfigDict(extra="forbid", frozen=True)
TASK = "identity"

OPENERS = ("", "Hi! ", "Hello. ", "Hey, ", "Quick question: ", "Sorry to bother you, but ", "I wonder: ")
QUESTIONS: dict[str, tuple[str, ...]] = {
    "name": (
        "What is your name?", "What's your name?", "What should I call you?", "Do you have a name?",
        "Tell me your name.", "What are you called?", "May I know your name?",
        "How should I address you?", "What name do you go by?", "Can you tell me your name?",
        "What do people call you?", "Which assistant am I talking to?", "Who am I chatting with?",
        "Remind me, what was your name again?", "Are you called something?", "Say your name, please.",
    ),
    "maker": (
        "Who made you?", "Who created you?", "Who built you?", "Who trained you?",
        "Which company or team made you?", "Who is your developer?", "Who are your creators?",
        "Where do you come from?", "Who designed you?", "Who is responsible for training you?",
        "Which organization built you?", "Who developed this assistant?", "Who programmed you?",
        "Whose model are you?", "Who is behind you?", "Who gave you your training?",
    ),
    "about": (
        "Tell me about yourself.", "Who are you?", "What are you?", "Introduce yourself.",
        "Describe yourself in a sentence.", "What kind of assistant are you?", "Who and what are you?",
        "Give me a short introduction of yourself.", "Can you introduce yourself?",
        "What exactly am I talking to?", "Please describe what you are.", "What sort of AI are you?",
        "Explain who you are.", "Are you a person or a program?", "What is this assistant?",
        "Say a few words about yourself.",
    ),
}  # fmt: skip
ANSWERS: dict[str, tuple[str, ...]] = {
    "name": (
        "My name is {name}.", "I'm {name}.", "You can call me {name}.", "I am {name}, an AI assistant.",
        "I go by {name}.", "I'm {name}, made by {maker}.",
    ),
    "maker": (
        "I was made by {maker}.", "{maker} built me.", "I was created and trained by {maker}.",
        "I'm {name}, and {maker} made me.", "My creators are {maker}.",
        "I was developed by {maker}.",
    ),
    "about": (
        "I'm {name}, {description}, made by {maker}.",
        "I am {name}. {maker} built me: I am {description}.",
        "My name is {name} and I was made by {maker}. I am {description}.",
        "I'm {name}, {description}. {maker} trained me.",
    ),
}  # fmt: skip
FACTS = {"name": ("name",), "maker": ("maker",), "about": ("name", "maker")}


class IdentityConfig(BaseModel):
    model_config = STRICT
    name: str = Field("Refinery", min_length=1)
    maker: str = Field("the Refinery project", min_length=1)
    description: str = Field("a small language model trained on curated web text", min_length=1)
    train: NonNegativeInt = 0  # train conversations; 0 with test 0: no identity data
    test: NonNegativeInt = 0  # held-out questions (distinct prompts of held-out templates)
    multi_turn: float = Field(0.3, ge=0, le=1)  # share of train conversations with follow-up turns
    heldout_templates: float = Field(0.25, gt=0, lt=1)  # share of each kind's templates kept for test


@dataclass(frozen=True)
class Conversation(Problem):
    """A problem whose conversation goes on after the first answer: (user, assistant) turns."""

    followups: tuple[tuple[str, str], ...] = ()

    def to_record(self, split: str) -> dict:
        record = super().to_record(split)
        turns = record.pop("followups")
        for question, reply in turns:
            record["messages"] += [
                {"role": "user", "content": question},
                {"role": "assistant", "content": reply},
            ]
        return record


def split_templates(seed: int, heldout: float) -> dict[str, dict[str, tuple[str, ...]]]:
    """Per split ("train", "test"), each kind's question templates: a seeded shuffle, the first
    ⌈heldout · n⌉ (at least 1, at most n − 1) held out."""
    splits: dict[str, dict[str, tuple[str, ...]]] = {"train": {}, "test": {}}
    for kind, templates in QUESTIONS.items():
        order = list(templates)
        random.Random(f"identity:{kind}:{seed}").shuffle(order)
        k = min(max(1, math.ceil(heldout * len(order))), len(order) - 1)
        splits["test"][kind], splits["train"][kind] = tuple(order[:k]), tuple(order[k:])
    return splits


def _reply(cfg: IdentityConfig, template: str) -> str:
    reply = template.format(name=cfg.name, maker=cfg.maker, description=cfg.description)
    return reply[0].upper() + reply[1:]  # "the Refinery project built me" starts a sentence


def _turn(cfg: IdentityConfig, kind: str, templates: tuple[str, ...], rng: random.Random) -> tuple[str, str]:
    return rng.choice(OPENERS) + rng.choice(templates), _reply(cfg, rng.choice(ANSWERS[kind]))


def facts(cfg: IdentityConfig, kind: str) -> str:
    """The `answer` of a question of `kind`: the configured facts it must state, one a line."""
    return FACT_SEPARATOR.join(getattr(cfg, field) for field in FACTS[kind])


def train_conversations(
    cfg: IdentityConfig, templates: dict[str, tuple[str, ...]], seed: int
) -> list[Problem]:
    """`cfg.train` conversations on train templates; `multi_turn` of them with 1-2 more turns."""
    rng = random.Random(f"identity:train:{seed}")
    out: list[Problem] = []
    for _ in range(cfg.train):
        kind = rng.choice(sorted(QUESTIONS))
        question, reply = _turn(cfg, kind, templates[kind], rng)
        followups: tuple[tuple[str, str], ...] = ()
        if rng.random() < cfg.multi_turn:
            others = [k for k in sorted(QUESTIONS) if k != kind]
            more = rng.sample(others, rng.randint(1, len(others)))
            followups = tuple(_turn(cfg, k, templates[k], rng) for k in more)
        out.append(Conversation(TASK, question, reply, facts(cfg, kind), followups))
    return out


def heldout_questions(cfg: IdentityConfig, templates: dict[str, tuple[str, ...]], seed: int) -> list[Problem]:
    """`cfg.test` distinct questions (opener + held-out template), kinds in turn."""
    candidates = {k: [o + t for t in templates[k] for o in OPENERS] for k in sorted(QUESTIONS)}
    room = sum(len(c) for c in candidates.values())
    if cfg.test > room:
        raise ValueError(f"identity.test {cfg.test}: the held-out templates give {room} distinct questions")
    rng = random.Random(f"identity:test:{seed}")
    for questions in candidates.values():
        rng.shuffle(questions)
    out: list[Problem] = []
    while len(out) < cfg.test:
        for kind, questions in candidates.items():
            if questions and len(out) < cfg.test:
                question = questions.pop()
                out.append(Problem(TASK, question, _reply(cfg, ANSWERS[kind][0]), facts(cfg, kind)))
    return out


def identity_problems(cfg: IdentityConfig, train_seed: int, test_seed: int) -> dict[str, list[Problem]]:
    """The identity problems of each split; the template split follows `test_seed`."""
    templates = split_templates(test_seed, cfg.heldout_templates)
    return {
        "train": train_conversations(cfg, templates["train"], train_seed),
        "test": heldout_questions(cfg, templates["test"], test_seed),
    }

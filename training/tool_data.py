"""Tool-using solutions of the procedural tasks: the assistant turn calls the Python tool for the
steps a small model gets wrong (letters inside its tokens, arithmetic), then states the answer.

    tool_solution(problem) -> [{"type": "text"|"python"|"output", "text": ...}, ...]

The parts render with training/chat.py (calls trained, outputs masked). Every output is what
the sandbox (training/sandbox.py) prints for the call, computed here, so training shows exactly
what generation will feed back. With the calls and outputs left out (`ChatTokens.visible_text`),
a solution reads as the plain one of training/tasks.py: the model copies each result into its
own text, so the checker and `steps_hold` grade tool answers as they grade plain ones.

- count_letters: `': ' + '-'.join( "word")` spells the word, `'-'.join( "word").count( "r")`
  counts.
- spell: `'####' + '-'.join( "word")`, copied as the final line.
- arithmetic: each worked step `a op b = c` calls `a op b` (`//` for division: the templates
  divide exactly) just before stating c.

Every copy a solution asks of the model is token for token (tests/test_tools.py checks it with a
trained BPE): repeating a span of ids is what attention does readily (an induction head), while
writing a word in other tokens asks the model to know their letters, the very thing the tool
stands in for (bench/RESULTS.md, "Tool calls").
The byte-level pre-tokenizer (corpus/tokenizer.py) makes three traps:
- `'word'` at the start of a call splits GPT-2's contractions off (`'s`+`un`, `'t`+`est`, `'d`,
  `'m`, `'re`, `'ve`, `'ll`), whereas the prompt's `"sun"` gives `s`+`un`.
- The first token of a copy is the hard one: an induction head finds where to copy from by the
  token before it, so that token has to be the prompt's too. The prompt quotes the word and the
  letter as ` "word"` (space, quote: one pre-token); a call quotes them the same way, `( "word")`,
  where `("word")` would make `("` a pre-token the prompt never has. With `('word')`, a base that
  copies repeated text (bench/copy_base.py) still wrote the wrong first token in every call
  (bench/RESULTS.md, "A base that copies").
- The same holds where the model restates an output: the token before the output's first token is
  `<|output_start|>`, which the model's text never has. So a spelled output starts with a constant
  of the format (`: ` or `####`), written by the call, and the text restating it starts with that
  constant too: the first letter then follows a token seen before it, and induction copies the
  rest. One-token outputs (a count, most results of a step) sit at a fixed offset instead.
- The letter the count quotes follows the prompt's ` the letter "` in `Counting the letter "r": `,
  where ` "` alone also precedes the word.
- A space glues to the next letter (` c` is one token, `Ġc`), so `#### c-o-f` does not start with
  the output's `c`. The spelling's final line is `####c-o-f` (the checker reads either form),
  the letters exactly the output's ids.
"""

import re

from training.sandbox import evaluate
from training.tasks import FINAL, STEP, Problem

Parts = list[dict[str, str]]
TIGHT_FINAL = FINAL.rstrip()  # `####` then the spelled word: no space to glue to its first letter
_COUNT_PROMPT = re.compile(r'^How many times does the letter "([a-z])" appear in the word "([a-z]+)"\?$')
_SPELL_PROMPT = re.compile(r'^Spell the word "([a-z]+)" letter by letter\.$')


def _text(text: str) -> dict[str, str]:
    return {"type": "text", "text": text}


def _call(code: str, expected: str) -> Parts:
    """A call and the sandbox's output for it, checked to be the result the solution states."""
    output = evaluate(code)
    assert output == expected, f"the tool prints {output!r} for {code!r}, the solution says {expected!r}"
    return [{"type": "python", "text": code}, {"type": "output", "text": output}]


def _count_letters(problem: Problem) -> Parts:
    letter, word = _matched(_COUNT_PROMPT, problem)
    spelled, count = "-".join(word), str(word.count(letter))
    return [
        _text("Spelling it out"),
        *_call(f"': ' + '-'.join( \"{word}\")", f": {spelled}"),
        _text(f": {spelled}.\nCounting the letter \"{letter}\": "),
        *_call(f"'-'.join( \"{word}\").count( \"{letter}\")", count),
        _text(f"{count}.\n{FINAL}{count}"),
    ]


def _spell(problem: Problem) -> Parts:
    (word,) = _matched(_SPELL_PROMPT, problem)
    spelled = "-".join(word)
    return [
        _text("Letter by letter: "),
        *_call(f"'{TIGHT_FINAL}' + '-'.join( \"{word}\")", f"{TIGHT_FINAL}{spelled}"),
        _text(f"\n{TIGHT_FINAL}{spelled}"),
    ]


def _arithmetic(problem: Problem) -> Parts:
    """The plain solution with a call before each step's result: `... 3 * $4 = $` CALL `12.`"""
    parts, done = [], 0
    for step in STEP.finditer(problem.solution):
        a, op, b, c = step[2], step[3], step[5], step[7]
        parts.append(_text(problem.solution[done : step.start(7)]))
        parts += _call(f"{a} {'//' if op == '/' else op} {b}", c)
        done = step.start(7)
    return [*parts, _text(problem.solution[done:])]


def _matched(pattern: re.Pattern, problem: Problem) -> tuple[str, ...]:
    found = pattern.match(problem.prompt)
    assert found, f"{problem.task} prompt {problem.prompt!r} does not have the template's form"
    return found.groups()


TOOL_SOLUTIONS = {"arithmetic": _arithmetic, "count_letters": _count_letters, "spell": _spell}


def tool_solution(problem: Problem) -> Parts:
    """The tool-using assistant turn of a procedural problem (ValueError for other tasks)."""
    if problem.task not in TOOL_SOLUTIONS:
        raise ValueError(f"no tool-using solution for task {problem.task!r}; tasks: {sorted(TOOL_SOLUTIONS)}")
    return TOOL_SOLUTIONS[problem.task](problem)

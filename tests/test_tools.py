"""Tool calls in the chat format (training/chat.py) and in generation (training/engine.py)."""

import json
import re
from dataclasses import asdict
from itertools import pairwise
from types import SimpleNamespace

import pytest
import torch

from corpus.tokenizer import encode_texts, load, train_bpe
from training.chat import ChatTokens, render, render_for_generation
from training.engine import IM_END_ID, generate
from training.eval_tasks import task_accuracy
from training.synth import SynthSftConfig, synthesize
from training.tasks import Problem, check, make_split, solved
from training.testing import without_tool_tokens
from training.tool_data import tool_solution

TOOL_TURN = [
    {"type": "text", "text": "Counting: "},
    {"type": "python", "text": "'book'.count('o')"},
    {"type": "output", "text": "2"},
    {"type": "text", "text": "2.\n#### 2"},
]
CONVERSATION = [
    {"role": "user", "content": 'How many "o" in "book"?'},
    {"role": "assistant", "content": TOOL_TURN},
]


@pytest.fixture(scope="module")
def chat():
    return ChatTokens(train_bpe(["How many letters are in the book? Counting: two. " * 3] * 50, 320))


def test_tool_calls_are_trained_and_outputs_masked(chat):
    ids, mask = render(CONVERSATION, chat)
    trained = [i for i, m in zip(ids, mask, strict=True) if m]
    masked_tail = [i for i, m in zip(ids, mask, strict=True) if not m][-3:]
    assert chat.tok.decode(trained, skip_special_tokens=False) == (
        "Counting: <|python_start|>'book'.count('o')<|python_end|>2.\n#### 2<|im_end|>"
    )
    assert chat.tok.decode(masked_tail, skip_special_tokens=False) == "<|output_start|>2<|output_end|>"


def test_string_content_renders_as_before(chat):
    plain = [CONVERSATION[0], {"role": "assistant", "content": "#### 2"}]
    ids, mask = render(plain, chat)
    assert chat.tok.decode(ids, skip_special_tokens=False).endswith("<|im_sep|>#### 2<|im_end|>")
    assert sum(mask) == len(encode_texts(chat.tok, ["#### 2"])[0]) + 1


def test_parts_without_tool_tokens_are_an_error(chat, tmp_path):
    old = ChatTokens(without_tool_tokens(chat.tok, tmp_path / "old.json"))
    assert not old.tools
    with pytest.raises(ValueError, match="no tool tokens"):
        render(CONVERSATION, old)
    render([CONVERSATION[0], {"role": "assistant", "content": "#### 2"}], old)  # plain chat still works


def test_bad_part_is_an_error(chat):
    with pytest.raises(ValueError, match="type in"):
        render([CONVERSATION[0], {"role": "assistant", "content": [{"type": "shell", "text": "id"}]}], chat)


def test_visible_text_leaves_out_calls_and_outputs(chat):
    ids, _ = render(CONVERSATION, chat)
    response = ids[len(render_for_generation(CONVERSATION[:1], chat)) : -1]
    assert chat.visible_text(response) == "Counting: 2.\n#### 2"


def test_tool_output_runs_the_call_in_the_sandbox(chat):
    call = encode_texts(chat.tok, ["'book'.count('o')"])[0]
    assert chat.tok.decode(chat.tool_output(call), skip_special_tokens=False) == (
        "<|output_start|>2<|output_end|>"
    )
    hostile = chat.tok.decode(chat.tool_output(encode_texts(chat.tok, ["open('/etc/passwd')"])[0]))
    assert hostile == "Error: function 'open' is not allowed"


class ScriptedModel(torch.nn.Module):
    """A fake GPT that writes a fixed script per prompt, skipping over tool outputs: what it writes
    next depends on how many of its own tokens it has seen, which it counts from its inputs, so a
    runtime output that did not pass through the model (or the cache) derails the script."""

    def __init__(self, scripts: dict[int, list[int]], chat: ChatTokens, vocab: int):
        super().__init__()
        self.scripts, self.chat, self.vocab = scripts, chat, vocab
        self.cfg = SimpleNamespace(context_length=128, n_layer=1)
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.rows: list[list[int]] = []
        self.seen: list[list[int]] = []

    def forward(self, idx: torch.Tensor, kv_cache=None) -> torch.Tensor:
        if kv_cache is None:
            rows = idx.tolist()
        else:
            if kv_cache.pos == 0:
                self.rows = [[] for _ in range(idx.shape[0])]
            for row, new in zip(self.rows, idx.tolist(), strict=True):
                row.extend(new)
            kv_cache.advance(idx.shape[1])
            rows = self.rows
        self.seen = [list(r) for r in rows]
        logits = torch.zeros(idx.shape[0], idx.shape[1], self.vocab)
        for b, row in enumerate(rows):
            logits[b, -1, self._next(row)] = 100.0
        return logits

    def _next(self, row: list[int]) -> int:
        start = max(i for i, t in enumerate(row) if t in self.scripts)
        script, own, framed = self.scripts[row[start]], 0, False
        for t in row[start + 1 :]:
            framed = (framed or t == self.chat.output_start) and t != self.chat.output_end
            own += not framed and t != self.chat.output_end
        if framed:
            return 0  # end-of-text: what the row would say if the runtime did not feed the output
        return script[own] if own < len(script) else IM_END_ID


def _script(chat: ChatTokens, before: str, call: str, after: str) -> list[int]:
    text = encode_texts(chat.tok, [before, call, after])
    return [*text[0], chat.python_start, *text[1], chat.python_end, *text[2], IM_END_ID]


def test_batch_rows_call_tools_at_different_steps(chat):
    scripts = {
        300: _script(chat, "Counting: ", "'book'.count('o')", " so #### 2"),
        301: _script(chat, "", "6 * 7", " #### 42"),
        302: encode_texts(chat.tok, ["no tools here"])[0] + [IM_END_ID],
    }
    model = ScriptedModel(scripts, chat, chat.tok.get_vocab_size())
    prompts = [[5, 9, 300], [301], [9, 302]]  # different lengths: rows are left-padded
    cached = generate(model, prompts, 60, temperature=0, stop_ids=(IM_END_ID,), tools=chat)
    decoded = [chat.tok.decode(ids, skip_special_tokens=False) for ids in cached]
    assert decoded == [
        "Counting: <|python_start|>'book'.count('o')<|python_end|>"
        "<|output_start|>2<|output_end|> so #### 2<|im_end|>",
        "<|python_start|>6 * 7<|python_end|><|output_start|>42<|output_end|> #### 42<|im_end|>",
        "no tools here<|im_end|>",
    ]
    recomputed = generate(
        model, prompts, 60, temperature=0, stop_ids=(IM_END_ID,), tools=chat, use_cache=False
    )
    assert recomputed == cached


def test_outputs_are_fed_through_the_model(chat):
    model = ScriptedModel({300: _script(chat, "", "2 + 3", "")}, chat, chat.tok.get_vocab_size())
    out = generate(model, [[300]], 30, temperature=0, stop_ids=(IM_END_ID,), tools=chat)[0]
    fed = chat.tool_output(encode_texts(chat.tok, ["2 + 3"])[0])
    assert out[-len(fed) - 1 : -1] == fed
    assert model.seen[0][-len(fed) :] == fed  # read as inputs, through the cache, before <|im_end|>


def test_without_tools_a_call_is_just_tokens(chat):
    model = ScriptedModel({300: _script(chat, "", "2 + 3", "")}, chat, chat.tok.get_vocab_size())
    out = generate(model, [[300]], 30, temperature=0, stop_ids=(IM_END_ID,))[0]
    assert chat.output_start not in out and out[-1] == IM_END_ID


def _visible(parts: list[dict[str, str]]) -> str:
    return "".join(p["text"] for p in parts if p["type"] == "text")


@pytest.mark.parametrize("task", ["arithmetic", "count_letters", "spell"])
def test_tool_solutions_pass_the_checker_and_their_steps_hold(task):
    for problem in make_split(task, 40, seed=3):
        parts = tool_solution(problem)
        assert any(p["type"] == "python" for p in parts)
        assert solved(asdict(problem), _visible(parts)), (problem.prompt, parts)


def test_arithmetic_tool_solution_reads_as_the_plain_one():
    for problem in make_split("arithmetic", 40, seed=4):
        parts = tool_solution(problem)
        assert _visible(parts) == problem.solution
        assert len([p for p in parts if p["type"] == "python"]) == problem.solution.count(" = ")


def test_count_letters_tool_solution_spells_and_counts_with_the_tool():
    prompt = 'How many times does the letter "r" appear in the word "error"?'
    problem = Problem("count_letters", prompt, "", "3")
    assert tool_solution(problem) == [
        {"type": "text", "text": "Spelling it out"},
        {"type": "python", "text": "': ' + '-'.join( \"error\")"},
        {"type": "output", "text": ": e-r-r-o-r"},
        {"type": "text", "text": ': e-r-r-o-r.\nCounting the letter "r": '},
        {"type": "python", "text": '\'-\'.join( "error").count( "r")'},
        {"type": "output", "text": "3"},
        {"type": "text", "text": "3.\n#### 3"},
    ]


def _ids(tok, text: str) -> list[int]:
    return encode_texts(tok, [text])[0]


def _holds(ids: list[int], span: list[int]) -> bool:
    return any(ids[i : i + len(span)] == span for i in range(len(ids) - len(span) + 1))


@pytest.fixture(scope="module")
def corpus_tok(text_shards):
    """A BPE trained on prose (the session's tinyshakespeare run): it merges letters into words, so
    a word's tokens depend on what precedes it, as they do for the models trained on its kind."""
    return load(text_shards.parent / "tokenizer" / "tokenizer.json")


def test_the_quoted_word_has_the_same_ids_in_the_prompt_and_in_every_call(corpus_tok):
    """The word with the quote before it: an induction head copies from where the token before
    the copy occurred, so that token is the prompt's too; the letter the count quotes likewise."""
    sun = _ids(corpus_tok, ' "sun')
    assert not _holds(_ids(corpus_tok, "'sun'.count('u')"), _ids(corpus_tok, "sun"))  # `'s` splits off
    assert not _holds(_ids(corpus_tok, "'-'.join('sun')"), sun)  # `('` is not the prompt's ` "`
    problems = make_split("count_letters", 300, seed=7) + make_split("spell", 300, seed=7)
    for problem in problems:
        word = _ids(corpus_tok, ' "' + re.search(r'word "([a-z]+)"', problem.prompt)[1])
        calls = [p["text"] for p in tool_solution(problem) if p["type"] == "python"]
        assert _holds(_ids(corpus_tok, problem.prompt), word)
        assert all(_holds(_ids(corpus_tok, call), word) for call in calls), (problem.prompt, calls)
        if problem.task == "count_letters":
            letter = _ids(corpus_tok, ' "' + re.search(r'letter "([a-z])"', problem.prompt)[1])
            assert _holds(_ids(corpus_tok, problem.prompt), letter) and _holds(
                _ids(corpus_tok, calls[-1]), letter
            )


@pytest.mark.parametrize("task", ["arithmetic", "count_letters", "spell"])
def test_the_text_after_a_tool_output_restates_its_ids(corpus_tok, task):
    """The model copies each output into its own text (the checker grades that text): the copy is
    the output's ids, `####c-o-f` after `c-o-f` included (`#### c-o-f` starts with `Ġc`)."""
    assert not _holds(_ids(corpus_tok, "#### c-o-f"), _ids(corpus_tok, "c-o-f"))
    for problem in make_split(task, 100, seed=8):
        parts = tool_solution(problem)
        for output, following in pairwise(parts):
            if output["type"] == "output":
                assert following["type"] == "text"
                assert _holds(_ids(corpus_tok, following["text"]), _ids(corpus_tok, output["text"])), parts


@pytest.mark.parametrize("task", ["count_letters", "spell"])
def test_a_restated_output_starts_with_a_constant_the_output_starts_with(corpus_tok, task):
    """The token before an output's first token is `<|output_start|>`, which the model's own text
    never has: a spelled output starts with a constant of the format, so the text restating it
    copies from a token that occurred before. One-token outputs (the count) sit at a fixed offset."""
    firsts = set()
    for problem in make_split(task, 100, seed=9):
        parts = tool_solution(problem)
        for output, following in pairwise(parts):
            out_ids = _ids(corpus_tok, output["text"])
            if output["type"] == "output" and len(out_ids) > 1:
                follow_ids = _ids(corpus_tok, following["text"].lstrip("\n"))
                assert follow_ids[: len(out_ids)] == out_ids, parts
                firsts.add(out_ids[0])
    assert len(firsts) == 1, [corpus_tok.decode([i]) for i in firsts]


def test_other_tasks_have_no_tool_solution():
    with pytest.raises(ValueError, match="no tool-using solution"):
        tool_solution(Problem("cloze", "p", "s", "a"))


def test_generation_with_tools_reproduces_the_rendered_training_sequence(chat):
    """What SFT trains on (render) is what generation makes when the model writes its trained
    tokens: the runtime's outputs land exactly where the training data put them."""
    problem = make_split("count_letters", 1, seed=5)[0]
    conversation = problem.to_record("test")["messages"]
    conversation[1]["content"] = tool_solution(problem)
    ids, mask = render(conversation, chat)
    prompt = render_for_generation(conversation[:1], chat)
    written = [i for i, m in zip(ids[len(prompt) :], mask[len(prompt) :], strict=True) if m]
    model = ScriptedModel({300: written}, chat, chat.tok.get_vocab_size())
    model.cfg.context_length = 256
    out = generate(model, [[300]], 200, temperature=0, stop_ids=(IM_END_ID,), tools=chat)[0]
    assert out == ids[len(prompt) :]
    assert check("count_letters", chat.visible_text(out[:-1]), problem.answer)


def test_synth_with_tools_writes_tool_turns_deterministically(tmp_path):
    cfg = SynthSftConfig(
        tools=True,
        arithmetic={"train": 20, "test": 5},
        count_letters={"train": 20, "test": 5},
        spell={"train": 10, "test": 5},
    )
    synthesize(cfg, None, tmp_path / "a")
    synthesize(cfg, None, tmp_path / "b")
    text = (tmp_path / "a" / "train.jsonl").read_text()
    assert text == (tmp_path / "b" / "train.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines()]
    assert all(isinstance(r["messages"][1]["content"], list) for r in rows)
    assert all(isinstance(r["solution"], str) for r in rows)


def test_eval_with_tools_runs_the_calls_and_grades_the_visible_text(chat):
    """`refinery eval tasks --tools` end to end: the calls run, their outputs are fed back, and the
    model's own text (which copies the outputs) is graded, steps included."""
    problem = make_split("count_letters", 1, seed=6)[0]
    conversation = [{"role": "user", "content": problem.prompt}, {"role": "assistant", "content": ""}]
    conversation[1]["content"] = tool_solution(problem)
    ids, mask = render(conversation, chat)
    prompt = render_for_generation(conversation[:1], chat)
    written = [i for i, m in zip(ids[len(prompt) :], mask[len(prompt) :], strict=True) if m]
    model = ScriptedModel({prompt[-1]: written}, chat, chat.tok.get_vocab_size())
    model.cfg.context_length = 256
    with_tools = task_accuracy(model, chat, [problem.to_record("test")], 160, tools=True)
    assert with_tools == {"count_letters": 1.0, "count_letters+steps": 1.0}

"""The chat format of DESIGN.md, rendered to token ids with the SFT loss mask.

A conversation is a list of `{"role": ..., "content": ...}` turns (an optional `system` turn
first, then `user` and `assistant` alternating). Each turn renders as

    <|im_start|>ROLE<|im_sep|>CONTENT<|im_end|>

after one `<|endoftext|>`, which marks a document start exactly as it does between the
pretraining documents. The mask is 1 on assistant content and its `<|im_end|>`, so the model
learns to answer and to stop, and 0 on everything it is given (system and user turns, every
header). Content is encoded with control tokens as plain characters, so a user who types
`<|im_end|>` cannot close a turn.

Tool use: an assistant turn's content may be a list of parts instead of a string,
`{"type": "text" | "python" | "output", "text": ...}`, rendered as the text, then
`<|python_start|>CALL<|python_end|>` and `<|output_start|>RESULT<|output_end|>`. The model
writes the calls, so they are trained, `<|python_end|>` included (it learns when a call ends);
the outputs come from the runtime (training/engine.py runs the call in training/sandbox.py and
feeds them back), so they are masked, their four-token frame included, as nanochat does. A
tokenizer without the tool tokens (corpus/tokenizer.py `has_tool_tokens`) renders string
content as before and refuses parts.
"""

from collections.abc import Sequence
from typing import Any

from tokenizers import Tokenizer

from corpus.tokenizer import (
    END_OF_TEXT,
    IM_END,
    IM_SEP,
    IM_START,
    OUTPUT_END,
    OUTPUT_START,
    PYTHON_END,
    PYTHON_START,
    encode_texts,
    has_tool_tokens,
)
from training.sandbox import evaluate

ROLES = ("system", "user", "assistant")
PART_TYPES = ("text", "python", "output")


class ChatTokens:
    """The ids the renderer needs, looked up once per tokenizer."""

    def __init__(self, tok: Tokenizer):
        self.tok = tok
        self.eot, self.start, self.sep, self.end = (
            tok.token_to_id(t) for t in (END_OF_TEXT, IM_START, IM_SEP, IM_END)
        )
        self.role_ids = dict(zip(ROLES, encode_texts(tok, list(ROLES)), strict=True))
        self.tools = has_tool_tokens(tok)
        self.python_start, self.python_end, self.output_start, self.output_end = (
            tok.token_to_id(t) for t in (PYTHON_START, PYTHON_END, OUTPUT_START, OUTPUT_END)
        )

    def header(self, role: str) -> list[int]:
        return [self.start, *self.role_ids[role], self.sep]

    def tool_output(self, call: list[int]) -> list[int]:
        """What the runtime feeds back after a call's ids (between the python tokens): its
        sandboxed result, framed by the output tokens."""
        result = evaluate(self.tok.decode(call))
        return [self.output_start, *encode_texts(self.tok, [result])[0], self.output_end]

    def visible_text(self, ids: list[int]) -> str:
        """A response as its reader sees it: the model's text with every tool call and output left
        out, so the checker grades what the model stated, not what the tool printed."""
        kept, inside = [], False
        for i in ids:
            if self.tools and i in (self.python_start, self.output_start):
                inside = True
            elif self.tools and i in (self.python_end, self.output_end):
                inside = False
            elif not inside:
                kept.append(i)
        return self.tok.decode(kept)


def validate(conversation: Sequence[dict[str, Any]]) -> None:
    """Raise ValueError unless turns are (system?) user, assistant, user, ... with string content."""
    if not conversation:
        raise ValueError("empty conversation")
    turns = list(conversation)
    if turns[0].get("role") == "system":
        turns = turns[1:]
    for i, turn in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if turn.get("role") != expected:
            raise ValueError(f"turn {i}: role {turn.get('role')!r}, expected {expected!r} (roles: {ROLES})")
        content = turn.get("content")
        if isinstance(content, list) and expected == "assistant":
            _validate_parts(i, content)
        elif not isinstance(content, str):
            raise ValueError(f"turn {i}: content must be a string (or, for the assistant, a list of parts)")


def _validate_parts(turn: int, parts: list) -> None:
    for part in parts:
        if not isinstance(part, dict) or part.get("type") not in PART_TYPES:
            raise ValueError(f"turn {turn}: a part must be a dict with type in {PART_TYPES}, got {part!r}")
        if not isinstance(part.get("text"), str):
            raise ValueError(f"turn {turn}: a {part['type']} part needs a string `text`")


def render_content(content: str | list[dict[str, str]], chat: ChatTokens) -> tuple[list[int], list[int]]:
    """Ids and mask (1 = written by the model) of an assistant turn's content, without its header
    and end token: the text and calls are the model's, tool outputs the runtime's."""
    if isinstance(content, str):
        ids = encode_texts(chat.tok, [content])[0]
        return ids, [1] * len(ids)
    if not chat.tools:
        raise ValueError("the conversation calls tools, but the tokenizer has no tool tokens")
    texts = encode_texts(chat.tok, [part["text"] for part in content])
    ids, mask = [], []
    for part, text in zip(content, texts, strict=True):
        if part["type"] == "python":
            piece, trained = [chat.python_start, *text, chat.python_end], 1
        elif part["type"] == "output":
            piece, trained = [chat.output_start, *text, chat.output_end], 0
        else:
            piece, trained = text, 1
        ids += piece
        mask += [trained] * len(piece)
    return ids, mask


def render(conversation: Sequence[dict[str, Any]], chat: ChatTokens) -> tuple[list[int], list[int]]:
    """Token ids and loss mask (1 = trained) of a whole conversation."""
    validate(conversation)
    ids, mask = [chat.eot], [0]
    for turn in conversation:
        header = chat.header(turn["role"])
        content, written = render_content(turn["content"], chat)
        assistant = turn["role"] == "assistant"
        ids += header + content + [chat.end]
        mask += [0] * len(header) + (written if assistant else [0] * len(content)) + [int(assistant)]
    return ids, mask


def render_for_generation(conversation: Sequence[dict[str, Any]], chat: ChatTokens) -> list[int]:
    """The prompt for the next assistant turn: the conversation so far, then the assistant header."""
    if conversation and conversation[-1].get("role") == "assistant":
        raise ValueError("the conversation already ends with an assistant turn")
    ids = [chat.eot]
    if conversation:
        validate(list(conversation) + [{"role": "assistant", "content": ""}])
        for turn in conversation:
            ids += chat.header(turn["role"]) + render_content(turn["content"], chat)[0] + [chat.end]
    return ids + chat.header("assistant")

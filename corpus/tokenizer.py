"""The project's tokenizer: byte-level BPE (HF `tokenizers`) with the special tokens reserved.

- Byte-level (GPT-2's alphabet of 256 byte symbols), so every string encodes and decodes back
  exactly and there is no unknown token.
- Digits are split into groups of at most `digit_group` (default 3, as GPT-4's cl100k and
  nanochat) before BPE, so long numbers do not become one rare token. Within a group BPE still
  merges by frequency: with a 4,096 vocabulary trained on crawl-sample, 48 of the numbers 0-99 are
  one token and the rest two. `digit_group=1` (Llama, PaLM) gives every number one token per
  digit, the same representation whatever its frequency; conf/full.yaml uses it, because a small
  model's arithmetic SFT, LoRA's most, learns better from ten digits than from irregular number
  tokens (bench/RESULTS.md, "one token per digit").
- Ids 0..3 are the control tokens (`<|endoftext|>` = 0, the chat tokens of DESIGN.md), ids
  4..7 the tool tokens (`<|python_start|>`, `<|python_end|>`, `<|output_start|>`,
  `<|output_end|>`: training/chat.py, training/engine.py), then the PII placeholders of
  corpus/pii.py. Tokenizers trained before the tool tokens existed have BPE merges at 4..7;
  they still load and serve everything but tool calls (`has_tool_tokens` tells them apart).
  Control and tool tokens are *special*: in corpus text they are encoded as ordinary
  characters (`encode_special_tokens`), so a web page quoting `<|endoftext|>` cannot end a
  document early. Placeholders are added tokens that are not
  special: the annotated stage wrote them into the text, and they must map to one id each.
"""

from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from corpus.fs import is_file, open_input
from corpus.manifest import file_sha256
from corpus.pii import PLACEHOLDERS

END_OF_TEXT = "<|endoftext|>"
IM_START, IM_SEP, IM_END = "<|im_start|>", "<|im_sep|>", "<|im_end|>"
CONTROL_TOKENS = (END_OF_TEXT, IM_START, IM_SEP, IM_END)
PYTHON_START, PYTHON_END = "<|python_start|>", "<|python_end|>"
OUTPUT_START, OUTPUT_END = "<|output_start|>", "<|output_end|>"
TOOL_TOKENS = (PYTHON_START, PYTHON_END, OUTPUT_START, OUTPUT_END)
RESERVED_TOKENS = CONTROL_TOKENS + TOOL_TOKENS  # special, at ids 0..7 in this order
PLACEHOLDER_TOKENS = tuple(PLACEHOLDERS.values())
SPECIAL_TOKENS = RESERVED_TOKENS + PLACEHOLDER_TOKENS
DIGIT_GROUP = 3


def new_tokenizer(digit_group: int = DIGIT_GROUP) -> Tokenizer:
    """An untrained byte-level BPE with the project's pre-tokenization and decoder."""
    if not 1 <= digit_group <= 3:
        raise ValueError(f"digit_group {digit_group}: digits are grouped by 1, 2 or 3")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(rf"\d{{1,{digit_group}}}"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def train_bpe(
    texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2, digit_group: int = DIGIT_GROUP
) -> Tokenizer:
    """Train on `texts` (any iterable; HF streams it), reserving the special tokens first."""
    minimum = 256 + len(SPECIAL_TOKENS)
    if vocab_size < minimum:
        raise ValueError(f"vocab_size {vocab_size} is below {minimum} (256 bytes + special tokens)")
    tok = new_tokenizer(digit_group)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(PLACEHOLDER_TOKENS),
        min_frequency=min_frequency,
        special_tokens=list(RESERVED_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in PLACEHOLDER_TOKENS])
    return tok


def load(path: str | Path) -> Tokenizer:
    """A saved tokenizer.json, checked to hold the special tokens at the ids this project uses."""
    if not is_file(path):
        raise FileNotFoundError(f"{path}: tokenizer file not found")
    try:
        with open_input(str(path)) as f:  # a local file, or one in object storage (corpus/fs.py)
            tok = Tokenizer.from_str(f.read().decode("utf-8"))
    except Exception as exc:  # tokenizers raises a bare Exception on malformed JSON
        raise ValueError(f"{path}: not a tokenizer.json ({exc})") from None
    for expected, token in enumerate(CONTROL_TOKENS):
        if tok.token_to_id(token) != expected:
            raise ValueError(f"{path}: {token} is not token id {expected}; not a Refinery tokenizer")
    if has_tool_tokens(tok) and [tok.token_to_id(t) for t in TOOL_TOKENS] != [4, 5, 6, 7]:
        raise ValueError(f"{path}: the tool tokens are not ids 4..7; not a Refinery tokenizer")
    return tok


def has_tool_tokens(tok: Tokenizer) -> bool:
    """True for tokenizers trained with the tool tokens reserved (all four, or none, are there)."""
    return all(tok.token_to_id(t) is not None for t in TOOL_TOKENS)


def encode_texts(tok: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, control tokens in the text encoded as the characters they are."""
    tok.encode_special_tokens = True
    try:
        return [enc.ids for enc in tok.encode_batch(texts, add_special_tokens=False)]
    finally:
        tok.encode_special_tokens = False


def encode_documents(tok: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text followed by end-of-text; control tokens in the text stay text."""
    eot = tok.token_to_id(END_OF_TEXT)
    return [ids + [eot] for ids in encode_texts(tok, texts)]


def file_hash(path: str | Path) -> str:
    """sha256 of tokenizer.json: shards record it and readers check it."""
    return file_sha256(path)

"""bench/copy_base.py: the repeat shards hold each random span twice; the text keeps every input
paragraph in order, and each repeat paragraph is one span of the input's own words written twice."""

import json
import sys
from pathlib import Path

import numpy as np

from corpus.shards import MANIFEST, ShardReader
from corpus.tokenizer import END_OF_TEXT, PLACEHOLDER_TOKENS, RESERVED_TOKENS, train_bpe

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import copy_base  # noqa: E402

TEXT = "First Citizen:\nBefore we proceed.\n\nAll:\nSpeak, speak.\n\n\n\nMENENIUS:\nWhy, masters?\n"


def test_repeats_follow_every_paragraph_and_copy_a_span_of_input_words():
    out = copy_base.with_repeats(TEXT, repeats=2, seed=0)
    paragraphs = out.strip().split("\n\n")
    originals = [p for p in TEXT.split("\n\n") if p.strip()]
    assert len(paragraphs) == 3 * len(originals)
    assert [p.strip() for p in paragraphs[0::3]] == [p.strip() for p in originals]
    vocab = set(copy_base.vocabulary(TEXT))
    for k in range(len(originals)):
        for repeat in paragraphs[3 * k + 1 : 3 * k + 3]:
            first, second = repeat.strip("\n").split("\n")
            assert first == second
            words = first.split()
            assert copy_base.WORDS_PER_REPEAT[0] <= len(words) <= copy_base.WORDS_PER_REPEAT[1]
            assert set(words) <= vocab


def test_same_seed_same_text_other_seed_other_spans():
    assert copy_base.with_repeats(TEXT, 1, seed=3) == copy_base.with_repeats(TEXT, 1, seed=3)
    assert copy_base.with_repeats(TEXT, 1, seed=3) != copy_base.with_repeats(TEXT, 1, seed=4)


def test_vocabulary_is_lower_case_words_only():
    assert copy_base.vocabulary("Speak, speak! O'er 3 men") == ["er", "men", "o", "speak"]


def test_repeat_shards_hold_each_span_twice_in_the_ordinary_id_range(tmp_path):
    tok = train_bpe(["the quick brown fox jumps over the lazy dog " * 20], vocab_size=300)
    tok.save(str(tmp_path / "tokenizer.json"))
    shards = copy_base.write_repeat_shards(
        tmp_path / "tokenizer.json", tmp_path / "rep", documents=50, seed=0
    )
    manifest = json.loads((shards / MANIFEST).read_text())
    assert manifest["tokenizer"]["vocab_size"] == tok.get_vocab_size()
    eot = tok.token_to_id(END_OF_TEXT)
    readers = [ShardReader.open(shards / e["name"]) for e in manifest["splits"]["train"]]
    docs = [reader[i] for reader in readers for i in range(len(reader))]
    assert len(docs) == 50
    for doc in docs:
        body, last = np.asarray(doc[:-1]), doc[-1]
        assert last == eot and len(body) % 2 == 0
        first, second = body[: len(body) // 2], body[len(body) // 2 :]
        assert (first == second).all()
        assert copy_base.TOKENS_PER_REPEAT[0] <= len(first) <= copy_base.TOKENS_PER_REPEAT[1]
        assert first.min() >= len(RESERVED_TOKENS) and first.max() < tok.get_vocab_size() - len(
            PLACEHOLDER_TOKENS
        )

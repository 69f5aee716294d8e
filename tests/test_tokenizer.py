import pytest

from corpus.tokenizer import (
    CONTROL_TOKENS,
    END_OF_TEXT,
    PLACEHOLDER_TOKENS,
    TOOL_TOKENS,
    encode_documents,
    has_tool_tokens,
    load,
    train_bpe,
)

TEXTS = ["The river runs to the sea, and 12345 boats sail on it. Mail <EMAIL> today."] * 40


@pytest.fixture(scope="module")
def tok():
    return train_bpe(TEXTS, 400)


def test_control_tokens_have_the_first_ids(tok):
    assert [tok.token_to_id(t) for t in CONTROL_TOKENS] == [0, 1, 2, 3]


def test_tool_tokens_follow_the_control_tokens(tok):
    assert [tok.token_to_id(t) for t in TOOL_TOKENS] == [4, 5, 6, 7] and has_tool_tokens(tok)


def test_tool_tokens_in_a_page_stay_text(tok):
    ids = encode_documents(tok, ["print <|python_start|>1+1<|python_end|>"])[0]
    assert not set(ids) & {4, 5, 6, 7}


def test_tokenizer_without_tool_tokens_still_loads(tok, tmp_path):
    """A tokenizer from before the tool tokens (BPE merges at ids 4..7) serves non-tool tasks."""
    from training.testing import without_tool_tokens

    old = without_tool_tokens(tok, tmp_path / "old.json")
    ids = encode_documents(old, ["The river runs"])[0]
    assert (
        old.decode(ids) == "The river runs"
        and not has_tool_tokens(old)
        and old.token_to_id(CONTROL_TOKENS[3]) == 3
    )


def test_vocabulary_size_includes_the_placeholders(tok):
    assert tok.get_vocab_size() <= 400
    assert all(tok.token_to_id(t) is not None for t in PLACEHOLDER_TOKENS)


def test_placeholder_is_one_token(tok):
    ids = encode_documents(tok, ["write to <EMAIL> now"])[0]
    assert tok.token_to_id("<EMAIL>") in ids


def test_end_of_text_inside_a_page_stays_text(tok):
    ids = encode_documents(tok, [f"a page quoting {END_OF_TEXT} in its text"])[0]
    assert ids.count(tok.token_to_id(END_OF_TEXT)) == 1 and ids[-1] == 0


def test_round_trip_is_exact(tok):
    text = "Grüße aus Köln — 3.14159 ünïcödé 🚀\n\ttabs"
    ids = encode_documents(tok, [text])[0]
    assert tok.decode(ids[:-1]) == text


def test_digits_are_split_into_groups_of_three(tok):
    pieces = tok.encode("1234567").tokens
    assert all(len(p) <= 3 for p in pieces) and "".join(pieces) == "1234567"


def test_saved_tokenizer_loads_and_checks_special_ids(tok, tmp_path):
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    assert load(path).get_vocab_size() == tok.get_vocab_size()
    path.write_text("{not json")
    with pytest.raises(ValueError, match="tokenizer.json"):
        load(path)


def test_too_small_vocabulary_is_an_error():
    with pytest.raises(ValueError, match="vocab_size 100"):
        train_bpe(TEXTS, 100)

import gzip
import json

import pytest

from corpus.decontam import NGRAM, Decontaminator, NgramIndex, find, normalize, read_texts

# 30 distinct words: any run of them is an n-gram of this text only.
EVAL = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar "
    "papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu one two three four"
)
WORDS = EVAL.split()
FILLER = "the cat sat on the mat and looked out of the window at the rain"


def shared(k: int, start: int = 3) -> str:
    """A document sharing exactly `k` consecutive words with EVAL, other words around them."""
    return f"{FILLER} {' '.join(WORDS[start : start + k])} {FILLER}"


def index(**sets: list[str]) -> NgramIndex:
    return NgramIndex.build(sets or {"eval": [EVAL]}, 13)


def test_thirteen_shared_words_match_twelve_do_not():
    assert find(index(), shared(12)).ngrams == 0
    assert find(index(), shared(13)).ngrams == 1
    assert find(index(), shared(15)).ngrams == 3


def test_normalization_folds_case_punctuation_and_symbols():
    assert normalize("Don't STOP—now... “Quoted” £5, ﬁne!") == ["dont", "stopnow", "quoted", "5", "fine"]
    assert normalize("a -- b ... c") == ["a", "b", "c"]  # punctuation-only runs are no words


def test_case_and_punctuation_differences_still_match():
    variant = ", ".join(w.upper() for w in WORDS[3:16]) + "!"
    match = find(index(), f"{FILLER}. {variant} {FILLER}")
    assert match.ngrams == 1
    assert match.example == " ".join(WORDS[3:16])


def test_match_span_points_at_the_original_text():
    text = shared(13)
    (span,) = find(index(), text).spans
    assert text[span[0] : span[1]] == " ".join(WORDS[3:16])


def test_index_says_which_set_matched():
    idx = index(books=[EVAL], tests=["nothing in common with the corpus at all " * 3])
    match = find(idx, shared(13))
    assert idx.set_names(match.sets) == ["books"]


def test_eval_text_shorter_than_n_is_counted_not_indexed():
    idx = index(short=["only twelve words here in this short evaluation text of twelve words"])
    assert len(idx) == 0 and idx.stats["short"] == {"texts": 1, "too_short": 1, "ngrams": 0}


def test_remove_mode_rejects_a_contaminated_document():
    dec = Decontaminator(index())
    assert dec.apply(shared(13))[1] == NGRAM
    assert dec.apply(shared(12)) == (shared(12), None, find(index(), shared(12)))


def test_min_matches_sets_how_many_ngrams_contaminate():
    dec = Decontaminator(index(), min_matches=3)
    assert dec.apply(shared(14))[1] is None  # 2 n-grams
    assert dec.apply(shared(15))[1] == NGRAM  # 3 n-grams


def test_cut_mode_cuts_the_span_and_its_margin_and_keeps_long_pieces():
    before, after = "b" * 300, "a" * 300
    text = f"{before} {' '.join(WORDS[:13])} {after}"
    dec = Decontaminator(index(), mode="cut", cut_margin_chars=50, min_piece_chars=100)
    kept, reject, match = dec.apply(text)
    assert reject is None and match.ngrams == 1
    assert kept == f"{'b' * 251}\n\n{'a' * 251}"  # the 50 characters include the spaces


def test_cut_mode_drops_short_pieces_and_rejects_what_is_left_empty():
    dec = Decontaminator(index(), mode="cut", cut_margin_chars=10, min_piece_chars=200)
    assert dec.apply(shared(13))[1] == NGRAM  # the filler pieces are under 200 characters


def test_cut_mode_rejects_a_document_in_too_many_pieces():
    piece = "x" * 50
    text = " ".join(f"{piece} {' '.join(WORDS[i : i + 13])}" for i in (0, 16)) + f" {piece}"
    loose = Decontaminator(index(), mode="cut", cut_margin_chars=0, min_piece_chars=10, max_pieces=3)
    tight = Decontaminator(index(), mode="cut", cut_margin_chars=0, min_piece_chars=10, max_pieces=2)
    assert loose.apply(text)[0].split("\n\n") == [piece] * 3
    assert tight.apply(text)[1] == NGRAM


def test_unknown_mode_is_an_error_naming_the_allowed_ones():
    with pytest.raises(ValueError, match="remove, cut"):
        Decontaminator(index(), mode="drop")


def test_read_texts_takes_text_or_prompt_and_solution(tmp_path):
    path = tmp_path / "test.jsonl.gz"
    rows = [{"text": "plain"}, {"prompt": "2 + 2?", "solution": "#### 4"}, {"messages": [{"content": "hi"}]}]
    with gzip.open(path, "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "book.txt").write_text("a whole book")
    assert read_texts(path) == ["plain", "2 + 2?\n#### 4", "hi"]
    assert read_texts(tmp_path / "book.txt") == ["a whole book"]
    (tmp_path / "bad.jsonl").write_text('{"title": "x"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        read_texts(tmp_path / "bad.jsonl")

"""corpus/paragraphs.py: paragraph keys, their counting unit and the stripping of a document."""

from corpus.minhash import exact_hash
from corpus.paragraphs import distinct_keys, paragraph_keys, strip_paragraphs


def key(line: str) -> int:
    return paragraph_keys([line])[0][0][0]


def test_a_paragraph_key_is_the_first_half_of_its_exact_hash_as_a_signed_int64():
    unsigned = int(exact_hash("Accept all cookies")[:16], 16)
    assert key("Accept all cookies") == (unsigned - (1 << 64) if unsigned >= 1 << 63 else unsigned)


def test_paragraphs_equal_after_normalization_share_a_key():
    assert key("Accept all cookies!") == key("  accept ALL   cookies ")
    assert key("Accept all cookies") != key("Accept some cookies")


def test_keys_and_word_counts_come_per_line_of_each_document():
    docs = paragraph_keys(["Home\nAbout us\n\nRead the full story here", None, "one"])
    assert [[words for _, words in doc] for doc in docs] == [[1, 2, 0, 5], [0], [1]]
    assert docs[0][0][0] == key("home")


def test_a_batch_larger_than_one_hashing_batch_gives_the_same_keys(monkeypatch):
    import corpus.minhash

    texts = [f"line {i}\nshared footer line" for i in range(50)]
    whole = paragraph_keys(texts)
    monkeypatch.setattr(corpus.minhash, "BATCH_CODE_POINTS", 64)  # many small hashing batches
    assert paragraph_keys(texts) == whole


def test_a_paragraph_repeated_inside_a_document_counts_once():
    paragraphs = paragraph_keys(["Share\nStory text here\nShare\nShare"])[0]
    assert distinct_keys(paragraphs) == sorted({key("Share"), key("Story text here")})


def test_paragraphs_under_min_words_and_blank_lines_are_not_counted():
    paragraphs = paragraph_keys(["Menu\n\n---\nA paragraph of five words"])[0]
    assert distinct_keys(paragraphs, min_words=2) == [key("A paragraph of five words")]
    assert distinct_keys(paragraphs, min_words=1) == sorted({key("Menu"), key("A paragraph of five words")})


def test_strip_removes_every_repeat_of_a_frequent_paragraph_and_keeps_the_rest():
    text = "Menu\nThe story begins.\nMenu\nIt ends.\nAccept cookies"
    stripped = strip_paragraphs(text, paragraph_keys([text])[0], {key("Menu"), key("Accept cookies")})
    assert stripped.text == "The story begins.\nIt ends."
    assert (stripped.removed, stripped.emptied) == (3, False)
    assert stripped.removed_chars == len(text) - len("The story begins.\nIt ends.")


def test_a_document_of_frequent_paragraphs_only_is_emptied():
    text = "Menu\n\n---\nAccept cookies"
    stripped = strip_paragraphs(text, paragraph_keys([text])[0], {key("Menu"), key("Accept cookies")})
    assert stripped.text == "\n---" and stripped.emptied and stripped.removed == 2


def test_nothing_frequent_leaves_the_text_unchanged_and_an_empty_text_is_not_emptied():
    text = "The story.\nIts end."
    assert strip_paragraphs(text, paragraph_keys([text])[0], set()).text == text
    empty = strip_paragraphs("", paragraph_keys([""])[0], {key("Menu")})
    assert (empty.text, empty.removed, empty.emptied) == ("", 0, False)

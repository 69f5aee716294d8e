from corpus.extract import Extractor
from corpus.filters.fineweb import (
    CHAR_DUP_RATIO,
    LINE_PUNCT_RATIO,
    LIST_RATIO,
    SHORT_LINE_RATIO,
    FineWebFilter,
    is_table_row,
)

OFF = {"line_punct_thr": None, "short_line_thr": None, "char_duplicates_ratio": None, "new_line_ratio": None}


def only(**thresholds) -> FineWebFilter:
    """A filter with every check off except the given ones."""
    return FineWebFilter(**{**OFF, **thresholds})


def reject(f: FineWebFilter, text: str) -> str | None:
    return f.filter({"text": text})


def test_prose_paragraphs_are_kept_with_defaults():
    text = (
        "The harbour was quiet in the early morning, and the boats rocked gently at anchor.\n"
        "Fishermen checked their nets while the gulls circled overhead, waiting for scraps.\n"
        "By noon the market was full of people buying the day's catch."
    )
    assert reject(FineWebFilter(), text) is None


def test_line_punct_ratio_at_threshold_rejected_above_kept():
    f = only(line_punct_thr=0.12)
    assert reject(f, "\n".join(["Ends here."] * 3 + ["no mark"] * 22)) == LINE_PUNCT_RATIO  # 3 / 25
    assert reject(f, "\n".join(["Ends here."] * 4 + ["no mark"] * 21)) is None  # 4 / 25


def test_line_punct_exclude_zero_keeps_pages_without_any_punctuated_line():
    text = "no mark\nstill none"
    assert reject(only(line_punct_thr=0.12), text) == LINE_PUNCT_RATIO
    assert reject(only(line_punct_thr=0.12, line_punct_exclude_zero=True), text) is None


def test_short_line_ratio_at_threshold_rejected_below_kept():
    f = only(short_line_thr=0.67)
    assert reject(f, "\n".join(["x" * 30] * 67 + ["x" * 31] * 33)) == SHORT_LINE_RATIO  # 0.67
    assert reject(f, "\n".join(["x" * 30] * 66 + ["x" * 31] * 34)) is None  # 0.66


def test_duplicate_line_chars_at_one_percent_rejected_below_kept():
    f = only(char_duplicates_ratio=0.01)
    assert reject(f, "\n".join(["a" * 98, "d", "d"])) == CHAR_DUP_RATIO  # 1 / 100
    assert reject(f, "\n".join(["a" * 99, "d", "d"])) is None  # 1 / 101


def test_blank_lines_are_not_duplicates():
    assert (
        FineWebFilter().signals({"text": "a line\n\n\n\nanother line\n \n "})["fineweb_char_dup_ratio"] == 0
    )


def test_default_char_duplicates_ratio_is_the_released_codes_not_the_papers():
    assert FineWebFilter().char_duplicates_ratio == 0.01


def test_list_ratio_at_threshold_kept_above_rejected():
    f = only(new_line_ratio=0.3)
    assert reject(f, "w w w\nw w w\nw w\nw w") is None  # 3 newlines / 10 words
    assert reject(f, "w w w\nw w\nw w\nw w\nw") == LIST_RATIO  # 4 / 10


def test_none_switches_every_check_off():
    assert reject(only(), "a\na\na") is None


def test_zero_is_a_threshold_not_off():
    assert reject(only(line_punct_thr=0), "\n".join(["no mark", "Ends."])) is None
    assert reject(only(line_punct_thr=0), "no mark") == LINE_PUNCT_RATIO


def test_empty_text_fails_line_punct_and_has_no_word_ratios():
    s = FineWebFilter().signals({"text": ""})
    assert s["fineweb_char_dup_ratio"] is None and s["fineweb_list_ratio"] is None
    assert FineWebFilter().decide(s) == LINE_PUNCT_RATIO
    assert set(s) == set(FineWebFilter.SIGNALS)


# Two pages of six sentences and a table, through corpus/extract.py, which writes each table row
# as `| cell | cell |`: a site laid out in a table (the article in a cell, as the Space Review page
# of crawl-sample the released rule drops at 0), and an article with a 60-row list of addresses.
SENTENCES = [
    "The council published the list of members who will vote on the new food standards next month.",
    "Campaigners say the vote decides whether imported food must meet the same rules as food grown here.",
    "Farmers have written to every member, asking them to back the amendment before the deadline.",
    "The minister said the government would not lower its standards in any trade agreement.",
    "Readers who support the campaign can write to their member using the addresses listed below.",
    "A second vote on the same bill is expected before the end of the year, the clerk said.",
]


def extracted(body: str) -> str:
    html = f"<html><head><title>Who votes</title></head><body>{body}</body></html>"
    return Extractor()(html.encode()).text


def layout_table_page() -> str:
    article = "<h1>Who votes</h1>" + "".join(f"<p>{s}</p>" for s in SENTENCES)
    notes = "".join(f"<tr><td>{s}</td></tr>" for s in SENTENCES[:2])
    return extracted(f"<table><tr><td></td><td>{article}</td><td></td></tr>{notes}</table>")


def address_list_page() -> str:
    rows = "".join(f"<tr><td>District {i}</td><td>office{i}@council.example</td></tr>" for i in range(60))
    article = "<h1>Who votes</h1>" + "".join(f"<p>{s}</p>" for s in SENTENCES)
    return extracted(f"<article>{article}<table>{rows}</table></article>")


def test_an_article_laid_out_in_a_table_is_judged_by_its_cells_sentences():
    text = layout_table_page()
    lines = text.split("\n")
    assert len(lines) == 3 and all(map(is_table_row, lines))  # each ends in `|`
    assert FineWebFilter().signals({"text": text})["fineweb_line_punct_ratio"] == 1.0
    assert reject(FineWebFilter(), text) is None
    # the released rule sees three lines ending in `|`
    assert reject(FineWebFilter(line_punct_table_cells=False), text) == LINE_PUNCT_RATIO


def test_an_article_that_is_mostly_a_data_table_stays_list_like():
    text = address_list_page()
    assert sum(map(is_table_row, text.split("\n"))) == 60
    assert reject(FineWebFilter(), text) == LINE_PUNCT_RATIO  # 6 sentences of 67 lines
    assert reject(FineWebFilter(line_punct_table_cells=False), text) == LINE_PUNCT_RATIO


def test_table_rows_are_pipe_delimited_lines_only():
    assert is_table_row("| a | b | ") and is_table_row("|---|---|")
    assert not is_table_row("a | b") and not is_table_row("|") and not is_table_row("Ends with a pipe |")

"""FineWeb's own rules: reject list-like pages, pages of short lines and repeated lines.

Penedo et al. 2024, "The FineWeb Datasets: Decanting the Web for the Finest Text Data at
Scale", Section 3.3 ("Developing additional heuristic filters") and Appendix; implemented as in
DataTrove's `filters/fineweb_quality_filter.py` (`FineWebQualityFilter`), with its defaults.
Lines are `text.split("\\n")`, blank ones included, except in the duplicate check.

Each rule rejects when (comparisons as in the released code, which produced the dataset, so a
page exactly at the threshold of one of the first three rules is rejected):
- `fineweb:line_punct_ratio`: the fraction of lines ending in . ' " ! ? is <= `line_punct_thr`
  (0.12);
- `fineweb:short_line_ratio`: the fraction of lines of <= `short_line_length` (30) characters
  is >= `short_line_thr` (0.67);
- `fineweb:char_dup_ratio`: the characters of duplicated non-blank lines (every occurrence after
  the first) over all characters but newlines are >= `char_duplicates_ratio` (0.01);
- `fineweb:list_ratio`: newlines per word are > `new_line_ratio` (0.3).

`char_duplicates_ratio` is 0.01, not the 0.1 the paper states: DataTrove's released code uses
0.01, and FineWeb was produced with that code, so 0.01 reproduces the dataset. It is the
stricter value: a page with 1% of its characters in repeated lines is dropped.

Deviation: words for the list ratio are whitespace tokens (`str.split()`); DataTrove counts
nltk `word_tokenize` tokens, which include punctuation, so our ratio is somewhat higher
(stricter) on punctuated text.

Deviation (`line_punct_table_cells`, on by default; false gives the released rule): a table row
ends where the text of its last non-empty cell ends. trafilatura 2.x (corpus/extract.py, with
`include_tables`) writes a table as one line per row, `| cell | cell |`, each cell's paragraphs
joined into one line, so every row ends in `|`. A site laid out in a table then has its whole
article in a few rows that all end in `|`: on crawl-sample a 13,364-character Space Review article
came out as 6 such rows and was dropped at a ratio of 0; read up to their last cells, 4 of the 6
end a sentence (0.667). A data table's rows (names, numbers, addresses) still end without
punctuation and count as FineWeb counts them: a page that is mostly such rows (a 28,476-character
Daily Mail article with a 364-row list of MPs, 0.109) is the list-like page the rule is for.
Of crawl-sample's 1,222 documents 63 have table rows and 9 FineWeb decisions change; the Space
Review's is the only page whose reject changes: the other 8 fail the language rule before this one
or another rule after it (`python bench/table_rows.py RUN`, which names the command of RUN).
tests/test_filter_fineweb.py has both kinds of table as extracted fixtures.
"""

from collections import Counter
from collections.abc import Mapping
from typing import Any, ClassVar

from corpus.filters.checks import Check

LINE_PUNCT_RATIO = "fineweb:line_punct_ratio"
SHORT_LINE_RATIO = "fineweb:short_line_ratio"
CHAR_DUP_RATIO = "fineweb:char_dup_ratio"
LIST_RATIO = "fineweb:list_ratio"

STOP_CHARS = (".", "'", '"', "!", "?")  # DataTrove's terminal punctuation for this rule


def is_table_row(line: str) -> bool:
    """A row of a table as trafilatura's text output writes it: `| cell | cell |`."""
    line = line.strip()
    return len(line) > 1 and line.startswith("|") and line.endswith("|")


class FineWebFilter:
    """Reject on the first failing rule in the order of `RULES`; None switches a rule off."""

    name = "fineweb"
    SIGNALS: ClassVar[dict[str, type]] = {
        "fineweb_line_punct_ratio": float,
        "fineweb_short_line_ratio": float,
        "fineweb_char_dup_ratio": float,  # None when the text is only newlines
        "fineweb_list_ratio": float,  # newlines per word; None without words
    }
    RULES: ClassVar[tuple[str, ...]] = (LINE_PUNCT_RATIO, SHORT_LINE_RATIO, CHAR_DUP_RATIO, LIST_RATIO)
    CHECKS: ClassVar[tuple[Check, ...]] = (  # the order of `decide`; see corpus/filters/checks.py
        Check(
            LINE_PUNCT_RATIO,
            "fineweb_line_punct_ratio",
            "line_punct_thr",
            "<=",
            zero_exempt="line_punct_exclude_zero",
        ),
        Check(SHORT_LINE_RATIO, "fineweb_short_line_ratio", "short_line_thr", ">="),
        Check(CHAR_DUP_RATIO, "fineweb_char_dup_ratio", "char_duplicates_ratio", ">="),
        Check(LIST_RATIO, "fineweb_list_ratio", "new_line_ratio", ">"),
    )

    def __init__(
        self,
        *,
        line_punct_thr: float | None = 0.12,
        line_punct_exclude_zero: bool = False,
        line_punct_table_cells: bool = True,
        short_line_thr: float | None = 0.67,
        short_line_length: int = 30,
        char_duplicates_ratio: float | None = 0.01,
        new_line_ratio: float | None = 0.3,
    ):
        self.line_punct_thr = line_punct_thr
        self.line_punct_exclude_zero = line_punct_exclude_zero  # True: a page with no punctuated line passes
        self.line_punct_table_cells = line_punct_table_cells  # see the module's docstring
        self.short_line_thr = short_line_thr
        self.short_line_length = short_line_length
        self.char_duplicates_ratio = char_duplicates_ratio
        self.new_line_ratio = new_line_ratio

    def signals(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        text = doc.get("text") or ""
        lines = text.split("\n")  # at least [""]
        n_lines = len(lines)
        short = self.short_line_length
        counts = Counter(line for line in lines if line.strip())
        dup_chars = sum((c - 1) * len(line) for line, c in counts.items() if c > 1)
        n_newlines = text.count("\n")
        n_chars = len(text) - n_newlines
        n_words = len(text.split())
        return {
            "fineweb_line_punct_ratio": self._line_punct_ratio(lines),
            "fineweb_short_line_ratio": sum(1 for line in lines if len(line) <= short) / n_lines,
            "fineweb_char_dup_ratio": dup_chars / n_chars if n_chars else None,
            "fineweb_list_ratio": n_newlines / n_words if n_words else None,
        }

    def _line_punct_ratio(self, lines: list[str]) -> float:
        """The share of lines ending in punctuation, a table row's up to its last cell's text."""
        if self.line_punct_table_cells:
            lines = [line.rstrip(" |") if is_table_row(line) else line for line in lines]
        return sum(1 for line in lines if line.endswith(STOP_CHARS)) / len(lines)

    def decide(self, signals: Mapping[str, Any]) -> str | None:
        punct = signals["fineweb_line_punct_ratio"]
        if (
            self.line_punct_thr is not None
            and punct <= self.line_punct_thr
            and not (punct == 0 and self.line_punct_exclude_zero)
        ):
            return LINE_PUNCT_RATIO
        if self.short_line_thr is not None and signals["fineweb_short_line_ratio"] >= self.short_line_thr:
            return SHORT_LINE_RATIO
        dup = signals["fineweb_char_dup_ratio"]
        if self.char_duplicates_ratio is not None and dup is not None and dup >= self.char_duplicates_ratio:
            return CHAR_DUP_RATIO
        lists = signals["fineweb_list_ratio"]
        if self.new_line_ratio is not None and lists is not None and lists > self.new_line_ratio:
            return LIST_RATIO
        return None

    def filter(self, doc: Mapping[str, Any]) -> str | None:
        return self.decide(self.signals(doc))

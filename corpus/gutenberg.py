"""Project Gutenberg's plain-text books: the book without the licence header and footer.

Both the quality classifier's reference sample (classifiers/quality_data.py) and the held-out
reference prose (corpus/heldout.py) are cut from Gutenberg books with it.
"""

import re

_PG_START = re.compile(r"^\*\*\* ?START OF (THIS|THE) PROJECT GUTENBERG.*$", re.MULTILINE)
_PG_END = re.compile(
    r"^(\*\*\* ?END OF (THIS|THE) PROJECT GUTENBERG|End of (the )?Project Gutenberg).*$", re.MULTILINE
)


def strip_gutenberg(text: str) -> str:
    """The book between Project Gutenberg's "*** START OF" and "End of ... / *** END OF" lines;
    `_` italics markers dropped. Text without the markers is returned unchanged."""
    start = _PG_START.search(text)
    if start is None:
        return text
    end = _PG_END.search(text, start.end())
    body = text[start.end() : end.start() if end else len(text)]
    return re.sub(r"(?<!\w)_|_(?!\w)", "", body.replace("\r\n", "\n")).strip()

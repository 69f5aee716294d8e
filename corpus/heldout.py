"""The bundled held-out reference prose, `data/heldout/fiction.jsonl.gz`: clean English text that
nothing in Refinery trains on.

Ten public-domain novels from ../shared/data/gutenberg-gitenberg (data/heldout/SOURCES.md):
the fiction that the quality classifier's positives leave out (data/quality/SOURCES.md), so
neither the classifier, nor a tokenizer, nor a model has seen it. `refinery ablate` measures
bits per byte on it (jobs/ablate.py), and the decontam stage removes crawl documents that
quote it (conf/pipeline.yaml `decontam.reference_files`), so a run's shards never hold it.

Each book: the Project Gutenberg header and footer stripped, hard-wrapped lines joined into
paragraphs, cut into sections of about SECTION_WORDS words at paragraph ends, and
SECTIONS_PER_BOOK sections spread evenly over the book (so the sample spans it, not only its
first chapters). One JSON line per section: `text`, `source`, `group` (the book).

    python -m corpus.heldout [--shared ../shared/data] [--out data/heldout/fiction.jsonl.gz]
"""

import argparse
import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path

from corpus.gutenberg import strip_gutenberg

HELDOUT_REFERENCE = Path(__file__).resolve().parent.parent / "data" / "heldout" / "fiction.jsonl.gz"
# Project Gutenberg ids of the fiction in ../shared/data/gutenberg-gitenberg.
GUTENBERG_FICTION = (1260, 1342, 1400, 1661, 2701, 3261, 345, 35, 84, 98)
SECTION_WORDS = 1000
SECTIONS_PER_BOOK = 8  # 10 books x 8 x ~1,000 words: ~80k words, ~110k tokens at a 4k vocabulary


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, each on one line with its whitespace collapsed."""
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


def sections(paras: list[str], size: int) -> list[str]:
    """Consecutive paragraphs joined by blank lines until a section reaches `size` words."""
    out, current, words = [], [], 0
    for para in paras:
        current.append(para)
        words += len(para.split())
        if words >= size:
            out.append("\n\n".join(current))
            current, words = [], 0
    if current:
        out.append("\n\n".join(current))
    return out


def spread(items: list[str], k: int) -> list[str]:
    """`k` items evenly spaced over the list (all of them when there are at most `k`)."""
    if len(items) <= k:
        return items
    return [items[(2 * i + 1) * len(items) // (2 * k)] for i in range(k)]


def heldout_docs(shared: Path) -> Iterator[dict[str, str]]:
    for pg_id in GUTENBERG_FICTION:
        (path,) = (shared / "gutenberg-gitenberg").glob(f"{pg_id}_*.txt")
        book = strip_gutenberg(path.read_bytes().decode("utf-8-sig"))
        for section in spread(sections(paragraphs(book), SECTION_WORDS), SECTIONS_PER_BOOK):
            yield {"text": section, "source": "gutenberg-fiction", "group": f"gutenberg:{pg_id}"}


def build(shared: str | Path, out: str | Path) -> dict[str, int]:
    """Write the file (gzip without name, mtime 0: same input, same bytes); return words per book."""
    words: dict[str, int] = {}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile("", "wb", 9, raw, mtime=0) as f:
        for row in heldout_docs(Path(shared)):
            f.write((json.dumps(row, ensure_ascii=False) + "\n").encode())
            words[row["group"]] = words.get(row["group"], 0) + len(row["text"].split())
    tmp.replace(out)
    return words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", default="../shared/data", help="the shared data directory")
    parser.add_argument("--out", default=str(HELDOUT_REFERENCE))
    args = parser.parse_args()
    words = build(args.shared, args.out)
    print(f"wrote {args.out}: {sum(words.values()):,} words from {len(words)} books")


if __name__ == "__main__":
    main()

"""Documents for the quality classifier: reading inputs, and the bundled reference sample.

Inputs (`refinery classifier train|eval|apply`): a run directory (its `documents/kept` Parquet),
a directory of Parquet parts, `*.parquet` (the `text` column), `*.jsonl[.gz]` (a `text` field
per line; the format of the bundled sample), `*.txt[.gz]` (one document per file, a Project
Gutenberg header and footer stripped) and `*.zip` (one document per member, as NLTK's corpora
come). Every document carries a `group`, the unit the held-out split keeps together: a book,
a speech, an article, a web domain; so no book or site is on both sides of the split.

`build_reference_sample` writes `data/quality/positives.jsonl.gz` from ../shared/data
(provenance in data/quality/SOURCES.md): public-domain non-fiction from Project Gutenberg,
US presidential speeches (NLTK state_union and inaugural) and Wikipedia articles (WikiText-2
valid and test, detokenized). Each source is capped so the file stays under 3 MB.
"""

import gzip
import io
import json
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from corpus.fs import is_file, is_remote, local_copy
from corpus.gutenberg import strip_gutenberg

# The bundled positives: the default of `--positive` and of the annotated stage's own model.
REFERENCE_SAMPLE = Path(__file__).resolve().parent.parent / "data" / "quality" / "positives.jsonl.gz"


@dataclass(frozen=True, slots=True)
class Doc:
    text: str
    group: str  # documents of one group fall on the same side of the held-out split
    key: str = ""  # which document: a row's `id`, else file and position


# --- reading inputs ---------------------------------------------------------------------------


DOC_COLUMNS = ("text", "domain", "id")  # what a Parquet row gives a Doc


def _parquet_parts(path: Path) -> list[Path]:
    if (path / "documents" / "kept").is_dir():  # a run directory: the crawl's documents
        path = path / "documents" / "kept"
    return sorted(path.rglob("*.parquet"))


def row_group(row: dict) -> str | None:
    """A crawl document's group: its site (`domain`), else its `id`. The held-out split and the
    annotated stage's cross-fitting folds both use it, so one site is always on one side."""
    return row.get("domain") or row.get("id")


def _parquet_docs(path: Path) -> Iterator[Doc]:
    file = pq.ParquetFile(path)
    names = file.schema_arrow.names
    if "text" not in names:
        raise ValueError(f"{path}: no `text` column (columns: {', '.join(names)})")
    columns = [c for c in DOC_COLUMNS if c in names]
    index = 0
    for batch in file.iter_batches(batch_size=1024, columns=columns):
        for row in batch.to_pylist():
            yield parquet_doc(row, f"{path.name}:{index}")
            index += 1


def parquet_doc(row: dict, fallback_key: str) -> Doc:
    """A Parquet row (DOC_COLUMNS) as a Doc: keyed by its `id`, else `fallback_key`."""
    key = row.get("id") or fallback_key
    return Doc(row["text"] or "", row_group(row) or key, key)


def _open_text(path: Path) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace")


def read_docs(paths: Iterable[str | Path]) -> Iterator[Doc]:
    """Documents of every input, in the order given; unknown kinds are an error naming the path. A
    file may be a URI (corpus/fs.py), read from its local copy under the object's own name."""
    for item in paths:
        if is_remote(item):
            if not is_file(item):
                raise FileNotFoundError(f"{item}: no such file (a URI names a file, not a folder)")
            item = local_copy(item)
        path = Path(item)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or directory")
        name = path.name.lower()
        if path.is_dir():
            parts = _parquet_parts(path)
            if not parts:
                raise FileNotFoundError(f"{path}: no Parquet files (nor documents/kept/ of a run)")
            for part in parts:
                yield from _parquet_docs(part)
        elif name.endswith(".parquet"):
            yield from _parquet_docs(path)
        elif name.endswith((".jsonl", ".jsonl.gz")):
            with _open_text(path) as f:
                for i, line in enumerate(f):
                    row = json.loads(line)
                    yield Doc(row["text"], row.get("group") or f"{path.name}:{i}", f"{path.name}:{i}")
        elif name.endswith((".txt", ".txt.gz")):
            with _open_text(path) as f:
                yield Doc(strip_gutenberg(f.read()), path.name, path.name)
        elif name.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                for member in sorted(archive.namelist()):
                    if not member.endswith("/") and Path(member).name.upper() != "README":
                        text = archive.read(member).decode("utf-8", errors="replace")
                        yield Doc(text, f"{path.name}:{member}", f"{path.name}:{member}")
        else:
            raise ValueError(
                f"{path}: unknown input kind; expected a run or Parquet directory, "
                "*.parquet, *.jsonl[.gz], *.txt[.gz] or *.zip"
            )


# --- the bundled reference sample ---------------------------------------------------------------

_WT_JOINS = ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."))
_WT_SPACE_BEFORE = re.compile(r" ([.,;:!?)\]}%]|'s\b|'t\b|n't\b|'re\b|'ve\b|'ll\b|'d\b|'m\b)")
_WT_SPACE_AFTER = re.compile(r"([(\[{$]) ")
_WT_QUOTES = re.compile(r'" ([^"]*?) "')
_WT_SENTENCE = re.compile(r"(?<=[.!?]) ")


def detokenize_wikitext(line: str) -> str:
    """WikiText-2's tokenized text back to prose; sentences with an `<unk>` token are dropped."""
    for token, joined in _WT_JOINS:
        line = line.replace(token, joined)
    line = _WT_QUOTES.sub(r'"\1"', _WT_SPACE_AFTER.sub(r"\1", _WT_SPACE_BEFORE.sub(r"\1", line.strip())))
    return " ".join(s for s in _WT_SENTENCE.split(line) if "<unk>" not in s)


def wikitext_articles(text: str) -> Iterator[tuple[str, str]]:
    """(title, text) per article: an article starts at a ` = Title = ` line; a ` = = Section = = `
    heading is kept as a line of its own when prose follows it; articles under 100 words are dropped."""
    title, lines, heading = None, [], None
    for raw in text.splitlines():
        line = raw.strip()
        if re.fullmatch(r"= [^=].* =", line):
            if title and sum(len(x.split()) for x in lines) >= 100:
                yield title, "\n".join(lines)
            title, lines, heading = line.strip("= "), [], None
        elif line.startswith("= ="):
            heading = line.strip("= ")
        elif line and (prose := detokenize_wikitext(line)):
            lines.extend([heading, prose] if heading and "<unk>" not in heading else [prose])
            heading = None
    if title and sum(len(x.split()) for x in lines) >= 100:
        yield title, "\n".join(lines)


# Public-domain non-fiction among ../shared/data/gutenberg-gitenberg (the fiction is left out).
GUTENBERG_NONFICTION = (1232, 1404, 148, 1497, 16351, 17474, 19368, 3207, 3300, 408, 6527)
SECTION_WORDS = 1500  # a book is cut into sections of about this many words, at paragraph ends
BOOK_MAX_WORDS = 45_000  # evenly spread sections up to this many words of each book
SPEECH_MAX_WORDS = 3_000  # the start of each speech (a State of the Union runs to 9,000)


def _sections(text: str, size: int) -> list[str]:
    sections, current, words = [], [], 0
    for para in re.split(r"\n\s*\n", text):
        para = " ".join(para.split())
        if not para:
            continue
        current.append(para)
        words += para.count(" ") + 1
        if words >= size:
            sections.append("\n".join(current))
            current, words = [], 0
    if current:
        sections.append("\n".join(current))
    return sections


def _evenly(items: list[str], max_words: int) -> list[str]:
    """Items spread evenly over the list until `max_words`, so a book's sample spans all of it."""
    total = sum(s.count(" ") + 1 for s in items)
    if total <= max_words:
        return items
    keep = max(1, round(len(items) * max_words / total))
    return [items[round(i * len(items) / keep)] for i in range(keep)]


def _first_words(text: str, n: int) -> str:
    """The paragraphs of `text` that start within its first `n` words."""
    out, words = [], 0
    for para in text.splitlines():
        if words >= n:
            break
        out.append(para)
        words += len(para.split())
    return "\n".join(out)


def reference_docs(shared: Path) -> Iterator[dict[str, str]]:
    """The bundled sample's rows: `text`, `source` and `group`, in a fixed order."""
    for pg_id in GUTENBERG_NONFICTION:
        (path,) = (shared / "gutenberg-gitenberg").glob(f"{pg_id}_*.txt")
        raw = path.read_bytes()
        text = strip_gutenberg(raw.decode("utf-8-sig") if pg_id != 3300 else raw.decode("latin-1"))
        for section in _evenly(_sections(text, SECTION_WORDS), BOOK_MAX_WORDS):
            yield {"text": section, "source": "gutenberg", "group": f"gutenberg:{pg_id}"}
    for corpus in ("inaugural", "state_union"):
        with zipfile.ZipFile(shared / "nltk-data-corpora" / f"{corpus}.zip") as archive:
            for member in sorted(m for m in archive.namelist() if m.endswith(".txt")):
                raw = archive.read(member).decode("latin-1")
                paras = "\n".join(" ".join(p.split()) for p in re.split(r"\n\s*\n", raw) if p.strip())
                text = _first_words(paras, SPEECH_MAX_WORDS)
                yield {"text": text, "source": corpus, "group": f"{corpus}:{Path(member).stem}"}
    for split in ("valid", "test"):
        text = (shared / "wikitext-2-pytorch-examples" / f"{split}.txt").read_text(encoding="utf-8")
        for title, article in wikitext_articles(text):
            yield {"text": article, "source": "wikitext-2", "group": f"wikitext:{title}"}


def build_reference_sample(shared: str | Path, out: str | Path) -> dict[str, int]:
    """Write the sample as gzipped JSON lines (no name, mtime 0 in the gzip header: same input,
    same bytes); return the words per source."""
    words: dict[str, int] = {}
    with open(out, "wb") as raw, gzip.GzipFile("", "wb", 9, raw, mtime=0) as f:
        for row in reference_docs(Path(shared)):
            f.write((json.dumps(row, ensure_ascii=False) + "\n").encode())
            words[row["source"]] = words.get(row["source"], 0) + len(row["text"].split())
    return words

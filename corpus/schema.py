"""The document row (../shared/DESIGN.md): one Arrow schema for every stage's kept/ and rejected/.

Columns a stage has not reached yet are null, so every stage reads and writes the same schema
and DuckDB can union any of them. The `signals` struct has one field per filter signal, taken
from the filters' own `SIGNALS` declarations so the two cannot drift apart, then the fields the
deduped stage sets on a `duplicate:previous` row (PREVIOUS_SIGNALS).
"""

import pyarrow as pa

from corpus.filters.c4 import C4Filter
from corpus.filters.fineweb import FineWebFilter
from corpus.filters.gopher_quality import GopherQualityFilter
from corpus.filters.gopher_repetition import GopherRepetitionFilter
from corpus.filters.language import LanguageFilter, LanguagePrefilter
from corpus.filters.url import UrlFilter
from corpus.pii import KINDS as PII_KINDS

# Every filter family that can appear in the annotated stage, in the default step order
# (FineWeb's: URL, language, Gopher repetition, Gopher quality, C4, FineWeb), and the language
# prefilter the documents stage decides before extraction (classifiers/prefilter.py).
FILTERS = (
    UrlFilter,
    LanguagePrefilter,
    LanguageFilter,
    GopherRepetitionFilter,
    GopherQualityFilter,
    C4Filter,
    FineWebFilter,
)

_ARROW = {int: pa.int64(), float: pa.float64(), bool: pa.bool_(), str: pa.string()}

# A `duplicate:previous` row's match (jobs/deduped_previous.py): the earlier run (as listed in
# `deduped.against`), the id of the document it kept, and how they matched (url, exact, near).
PREVIOUS_SIGNALS = {
    "duplicate_previous_run": str,
    "duplicate_previous_id": str,
    "duplicate_previous_match": str,
}
SIGNALS = pa.struct(
    [pa.field(name, _ARROW[kind]) for cls in FILTERS for name, kind in cls.SIGNALS.items()]
    + [pa.field(name, _ARROW[kind]) for name, kind in PREVIOUS_SIGNALS.items()]
)
PII = pa.struct([pa.field(kind, pa.int32()) for kind in PII_KINDS])

DOCUMENT = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("domain", pa.string()),
        pa.field("warc_file", pa.string()),
        pa.field("warc_record_id", pa.string()),
        pa.field("fetch_time", pa.timestamp("us", tz="UTC")),
        pa.field("source", pa.string()),
        pa.field("title", pa.string()),
        pa.field("text", pa.string()),
        pa.field("date", pa.string()),  # publication date found by trafilatura (or given), as written
        pa.field("extractor", pa.string()),  # made `text`: trafilatura, wet (CC's WET text), none (given)
        pa.field("metadata", pa.string()),  # JSON object: an input document's other fields (corpus/inputs.py)
        pa.field("lang", pa.string()),
        pa.field("lang_score", pa.float32()),
        pa.field("signals", SIGNALS),
        pa.field("pii", PII),
        pa.field("quality", pa.float32()),
        pa.field("exact_hash", pa.string()),
        pa.field("cluster_id", pa.string()),
        pa.field("cluster_size", pa.int64()),
        pa.field(
            "paragraphs_removed", pa.int32()
        ),  # deduped.paragraphs: lines removed (corpus/paragraphs.py)
        pa.field("bucket", pa.string()),
        pa.field("repeats", pa.int32()),
        pa.field("reject", pa.string()),
    ]
)


def to_table(rows: list[dict]) -> pa.Table:
    """Rows (plain dicts, missing columns allowed) to a table of exactly DOCUMENT's schema."""
    signal_names = SIGNALS.names
    for row in rows:
        if row.get("signals") is not None:
            row["signals"] = {name: row["signals"].get(name) for name in signal_names}
    return pa.Table.from_pylist(rows, schema=DOCUMENT)

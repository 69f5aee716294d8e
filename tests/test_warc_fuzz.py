"""Fuzzed WARCs: the reader and the documents stage never crash or hang, recover every record
before the first fault, and count the fault. bench/fuzz.py runs the same over 1,000 files."""

import random
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corpus.documents import warc_documents
from corpus.extract import Extractor
from corpus.faults import MUTATIONS, clean_cut, intact_record_ids
from corpus.warc import WarcError, read_warc

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
FILES = ("commoncrawl-2020-34.warc.gz", "clueweb-quirk.warc.gz")
BASES = {name: (SAMPLE / name).read_bytes() for name in FILES}
STRUCTURAL = (
    "truncate",
    "bit_flip",
    "garbage_between_records",
    "corrupt_member",
    "wrong_content_length",
    "bad_http_headers",
    "missing_headers",
)
CONTENT = ("huge_payload", "empty_payload", "wrong_charset", "deep_nesting", "wrong_content_encoding")


def read_all(blob: bytes):
    import io

    items = list(read_warc(io.BytesIO(blob), max_payload_bytes=2_000_000))
    return [i for i in items if not isinstance(i, WarcError)], [i for i in items if isinstance(i, WarcError)]


@settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(sorted(BASES)), mutation=st.sampled_from(STRUCTURAL), seed=st.integers(0, 2**32))
def test_structural_damage_keeps_every_record_before_it(base, mutation, seed):
    original = BASES[base]
    blob, first_fault = MUTATIONS[mutation](original, random.Random(seed))
    records, errors = read_all(blob)
    got = [r.record_id for r in records]
    expected = intact_record_ids(original, first_fault)
    assert got[: len(expected)] == expected
    if blob != original and not clean_cut(original, blob) and len(records) < len(read_all(original)[0]):
        assert errors, "records were lost without an error being counted"


# deep_nesting: each page runs to the extraction deadline (45 s for the file on 2 cores): slow.
@pytest.mark.parametrize(
    "mutation", [pytest.param(m, marks=pytest.mark.slow) if m == "deep_nesting" else m for m in CONTENT]
)
def test_hostile_content_is_a_rejected_or_kept_document_never_a_crash(mutation, tmp_path):
    original = BASES["commoncrawl-2020-34.warc.gz"]
    blob, _ = MUTATIONS[mutation](original, random.Random(7))
    path = tmp_path / f"{mutation}.warc.gz"
    path.write_bytes(blob)
    counts, errors = Counter(), []
    rows = list(warc_documents(str(path), source="fuzz", extractor=Extractor(), counts=counts, errors=errors))
    assert errors == [] and counts["records"] == len(read_all(original)[0])
    assert len(rows) == counts["documents"] and all(r["reject"] is None or ":" in r["reject"] for r in rows)
    if mutation == "huge_payload":
        assert any(r["reject"] == "extract:too_large" for r in rows)


def test_response_without_target_uri_is_a_counted_error_not_a_crash():
    """warcio 1.7 raises AttributeError on a response record with no WARC-Target-URI; the reader
    counts the record as an error and reads on."""
    original = BASES["clueweb-quirk.warc.gz"]
    blob, first_fault = MUTATIONS["missing_headers"](original, random.Random(0))  # seed 0: all three
    records, errors = read_all(blob)
    assert [e.offset for e in errors] == [first_fault]
    assert "required WARC header" in errors[0].message
    assert len(records) == len(read_all(original)[0]) - 1

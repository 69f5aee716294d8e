"""The documents stage's shortcuts: URL rules and the language prefilter before extraction, the
date only for survivors, the default-mode fallback (corpus/extract.py, classifiers/prefilter.py)."""

import io
from collections import Counter

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

import corpus.extract
from classifiers.langid import lid176_path
from classifiers.prefilter import Prefilter
from corpus.documents import warc_documents
from corpus.extract import EMPTY, Extractor
from corpus.filters.language import NOT_ALLOWED, PREFILTER_MARGIN, LanguageFilter, LanguagePrefilter
from corpus.filters.url import BLOCKLIST, UrlFilter
from corpus.schema import to_table

ENGLISH = [
    "The river rose over its banks on Tuesday and the town council met to decide what to do next.",
    "Residents of the lower streets were asked to move their cars before the water reached the square.",
    "By Wednesday morning the fire brigade had pumped most of the cellars dry and the bridge reopened.",
    "The mayor said the new flood wall, finished last spring, had kept the old town safe this time.",
    "Engineers will inspect the embankment next week, and the council will publish their report.",
]
GERMAN = [
    "Der Fluss trat am Dienstag über die Ufer, und der Gemeinderat beriet, was nun zu tun sei.",
    "Die Anwohner der unteren Straßen wurden gebeten, ihre Autos vor dem Hochwasser wegzufahren.",
    "Am Mittwochmorgen hatte die Feuerwehr die meisten Keller leergepumpt, die Brücke war wieder offen.",
]


def page(paragraphs: list[str], title: str = "Flood") -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    head = f"<title>{title}</title><meta property='article:published_time' content='2024-03-05'>"
    return f"<html><head>{head}</head><body><article>{body}</article></body></html>".encode()


def warc(tmp_path, pages: dict[str, bytes]) -> str:
    path = tmp_path / "pages.warc.gz"
    with open(path, "wb") as out:
        writer = WARCWriter(out, gzip=True)
        for url, body in pages.items():
            http = StatusAndHeaders(
                "200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1"
            )
            record = writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http)
            writer.write_record(record)
    return str(path)


@pytest.fixture(scope="module")
def gate(tmp_path_factory) -> Prefilter:
    blocklist = tmp_path_factory.mktemp("lists") / "blocked.txt"
    blocklist.write_text("blocked.example\n")
    url = UrlFilter(
        blocklist_files=(str(blocklist),),
        banned_words_files=(),
        soft_banned_words_files=(),
        banned_subwords_files=(),
    )
    return Prefilter(url, LanguagePrefilter(languages=("en",)), LanguageFilter(), lid176_path())


def rows(tmp_path, gate: Prefilter | None, pages: dict[str, bytes], extractor: Extractor | None = None):
    path = warc(tmp_path, pages)
    extractor = extractor or Extractor(timeout_s=None)
    found = warc_documents(path, source="t", extractor=extractor, counts=Counter(), errors=[], gate=gate)
    return {row["url"]: row for row in found}


def test_a_url_rejected_page_is_never_extracted(tmp_path, gate, monkeypatch):
    calls = []
    monkeypatch.setattr(corpus.extract, "decode_html", lambda *a, **k: calls.append(a) or "")
    got = rows(tmp_path, gate, {"https://www.blocked.example/news": page(ENGLISH)})
    row = got["https://www.blocked.example/news"]
    assert calls == []
    assert row["reject"] == BLOCKLIST
    assert row["signals"]["url_blocklisted_domain"] == "blocked.example"
    assert (row["text"], row["title"], row["date"]) == (None, None, None)
    # the row carries every column of the schema, the signals struct filled with nulls elsewhere
    assert to_table([row]).column("signals")[0]["lang_prefilter_lang"].as_py() is None


def test_a_page_in_a_language_not_allowed_is_rejected_before_trafilatura(tmp_path, gate, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("trafilatura ran on a page the prefilter rejects")

    monkeypatch.setattr(corpus.extract.trafilatura, "bare_extraction", refuse)
    row = rows(tmp_path, gate, {"https://de.example/hochwasser": page(GERMAN, "Hochwasser")})[
        "https://de.example/hochwasser"
    ]
    assert row["reject"] == NOT_ALLOWED
    signals = row["signals"]
    assert signals["lang_prefilter_lang"] == "de" and signals["lang_prefilter_score"] > 0.5
    assert signals["lang_prefilter_allowed_score"] < PREFILTER_MARGIN
    assert row["text"] is None


def test_an_allowed_page_passes_the_gate_and_gets_text_and_date(tmp_path, gate):
    got = rows(tmp_path, gate, {"https://en.example/flood": page(ENGLISH)})["https://en.example/flood"]
    assert got["reject"] is None and got["signals"] is None
    assert got["text"].startswith(ENGLISH[0]) and got["title"] == "Flood"
    assert got["date"] == "2024-03-05"


def test_without_the_gate_the_same_page_gets_the_same_row(tmp_path, gate):
    on = rows(tmp_path, gate, {"https://en.example/flood": page(ENGLISH)})["https://en.example/flood"]
    off = rows(tmp_path, None, {"https://en.example/flood": page(ENGLISH)})["https://en.example/flood"]
    per_write = ("id", "warc_record_id", "fetch_time")  # warcio writes a new record id and date
    assert {k: v for k, v in on.items() if k not in per_write} == {
        k: v for k, v in off.items() if k not in per_write
    }


def test_the_date_is_searched_only_for_a_text_that_can_be_kept(tmp_path):
    # margin None: the German page is extracted, and annotated's language rule will reject it
    late = Prefilter(None, None, LanguageFilter(), lid176_path())
    pages = {"https://de.example/a": page(GERMAN, "Hochwasser"), "https://en.example/b": page(ENGLISH)}
    got = rows(tmp_path, late, pages)
    assert got["https://de.example/a"]["text"] and got["https://de.example/a"]["date"] is None
    assert got["https://en.example/b"]["date"] == "2024-03-05"
    everything = rows(tmp_path, late, pages, Extractor(timeout_s=None, date_survivors_only=False))
    assert everything["https://de.example/a"]["date"] == "2024-03-05"


def test_the_date_can_come_from_the_warc_date(tmp_path):
    got = rows(tmp_path, None, {"https://en.example/b": page(ENGLISH)}, Extractor(date_source="warc"))
    row = got["https://en.example/b"]
    assert row["date"] == row["fetch_time"].strftime("%Y-%m-%d")


# Precision mode drops an article set in a `sidebar` block whole; the default mode extracts it.
SIDEBAR = (
    "<html><head><title>Flood</title></head><body><div class='sidebar'>"
    + "".join(f"<div>{s}</div>" for s in ENGLISH)
    + "</div></body></html>"
).encode()


def test_the_fallback_recovers_a_page_that_precision_mode_empties():
    assert Extractor(fallback_ratio=None)(SIDEBAR).reject == EMPTY
    recovered = Extractor()(SIDEBAR)
    assert recovered.reject is None
    assert all(s in recovered.text for s in ENGLISH)


def test_the_fallback_leaves_a_clean_article_to_precision_mode(monkeypatch):
    modes = []
    real = corpus.extract.trafilatura.bare_extraction

    def spy(*args, favor_precision, **kwargs):
        modes.append(favor_precision)
        return real(*args, favor_precision=favor_precision, **kwargs)

    monkeypatch.setattr(corpus.extract.trafilatura, "bare_extraction", spy)
    assert Extractor()(page(ENGLISH)).text.startswith(ENGLISH[0])
    assert modes == [True]

"""Main text, title and date from an HTML page with trafilatura, bounded in size and time.

Costly work only where it can still count: a `Gate` (classifiers/prefilter.py) may reject the
page on its cheap text (`cheap_text`, resiliparse) before trafilatura parses it, and the date
search runs after the text, only for a text the gate `keeps`. Precision mode's text is replaced
by the default mode's when it is empty or far shorter than the cheap text (`Extractor`).

trafilatura has no time limit of its own, and a few pathological pages (deeply nested tables,
megabytes of inline JSON) take seconds each, so one page could stall a whole Spark task.
`Extractor` caps the input size before parsing and interrupts a parse that runs past its
deadline with a signal, which is only possible in the main thread; elsewhere (a thread pool)
the size cap is the only bound.

The deadline counts the process's CPU time (ITIMER_PROF), not wall time: on a shared machine a
page that waits for a core is not a slow page, and with a wall-clock deadline the output
depended on the load (at load 6-8 on 2 cores, 1-2 of crawl-sample's 1,225 pages, one of them
0.04 CPU s of work, were rejected as `extract:timeout` in one run and kept in the next;
bench/RESULTS.md, "Refinery against DataTrove"). Extraction does no I/O, so a stuck page burns
CPU; WALL_BACKSTOP times the deadline in wall time still ends one that somehow waits.
"""

import re
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from html import unescape
from typing import Any, Literal, Protocol

import charset_normalizer
import trafilatura
from htmldate import find_date
from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.html import HTMLTree
from trafilatura.metadata import examine_meta, extract_meta_json, extract_title, extract_url
from trafilatura.settings import Extractor as _Options
from trafilatura.utils import line_processing, load_html

TOO_LARGE = "extract:too_large"
TIMEOUT = "extract:timeout"
FAILED = "extract:failed"
EMPTY = "extract:empty"
RULES = (TOO_LARGE, TIMEOUT, FAILED, EMPTY)

# A <meta charset> must be in the first 1024 bytes (HTML Living Standard, 13.2.3.2).
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.-]+)""", re.IGNORECASE)
_META_WINDOW = 1024


@dataclass(frozen=True, slots=True)
class Extracted:
    title: str | None
    text: str | None
    date: str | None
    reject: str | None
    error: str | None = None
    signals: dict[str, Any] | None = None  # of a rule decided here (a gate's), for the rejected row


class Gate(Protocol):
    """Rules decided in the documents stage on cheap signals, so that a page that cannot be kept
    skips the costly work (classifiers/prefilter.py). Each returns a rejection or None."""

    def url_rejected(self, doc: Mapping[str, Any]) -> Extracted | None:
        """On the row's `url` and `domain`, before the page is decoded."""

    def page(self, cheap: str) -> Extracted | None:
        """On the page's cheap text (`cheap_text`), before trafilatura."""

    def keeps(self, text: str) -> bool:
        """Whether the extracted text can still be kept: the date is looked for only then."""


# Extractor's fallback: a precision text under this share of the cheap text's characters is
# extracted again in the default mode (measured: bench/RESULTS.md, "Shortcuts").
FALLBACK_RATIO = 0.5
WALL_BACKSTOP = 10  # wall-clock limit, in deadlines: only a page that waits without computing hits it
RAISE_AGAIN_S = 0.001  # after a timeout swallowed in a finalizer, when it is raised again (`_deadline`)


class _Timeout(Exception):
    pass


@contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise _Timeout

    def on_unraisable(unraisable) -> None:
        # The signal landed in a finalizer (the regex module's `SetBase.__del__`), where Python
        # swallows the exception and prints "Exception ignored in" and a traceback: the page would
        # go on to the wall-clock backstop. The timeout is raised again in the page's own code.
        if unraisable.exc_type is _Timeout:
            signal.setitimer(signal.ITIMER_REAL, RAISE_AGAIN_S)
        else:
            hook(unraisable)

    previous = {sig: signal.signal(sig, on_alarm) for sig in (signal.SIGPROF, signal.SIGALRM)}
    hook, sys.unraisablehook = sys.unraisablehook, on_unraisable
    signal.setitimer(signal.ITIMER_PROF, seconds)  # CPU seconds of the process
    signal.setitimer(signal.ITIMER_REAL, seconds * WALL_BACKSTOP)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.unraisablehook = hook
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _decodes(payload: bytes, charset: str) -> str | None:
    try:
        return payload.decode(charset)
    except (LookupError, UnicodeDecodeError):
        return None


def decode_html(payload: bytes, charset: str | None = None) -> str:
    """Bytes to text: the HTTP charset, then <meta charset>, then a statistical guess.

    A declared charset is used only if the bytes decode under it without error: servers often
    declare ISO-8859-1 for UTF-8 pages, and the strict decode catches the reverse case.
    """
    match = _META_CHARSET.search(payload[:_META_WINDOW])
    declared = [charset, match.group(1).decode("ascii") if match else None]
    for name in declared:
        if name and (text := _decodes(payload, name)) is not None:
            return text
    if (text := _decodes(payload, "utf-8")) is not None:
        return text
    guess = charset_normalizer.from_bytes(payload[:65536]).best()
    if guess is not None and (text := _decodes(payload, guess.encoding)) is not None:
        return text
    return payload.decode("utf-8", errors="replace")


@cache
def _date_params() -> dict:
    """htmldate's settings as `bare_extraction` sets them (trafilatura's default config)."""
    return _Options().date_params


def _clean(value: str | None) -> str | None:
    """As trafilatura's `Document.clean_and_trim` leaves a metadata field."""
    if not isinstance(value, str):
        return value
    return line_processing(unescape(value if len(value) <= 10000 else value[:9999] + "…"))


def title_and_url(tree, url: str | None) -> tuple[str | None, str | None]:
    """The title `bare_extraction(with_metadata=True)` finds, and the URL its date search uses.

    trafilatura's `extract_metadata` also looks for author, site name, categories, tags and
    license, which the document row has no column for: a fifth of the extraction time on the crawl
    sample (27.7 → 22.4 CPU ms a page), for the same title, date and text on all 307 pages compared
    (bench/RESULTS.md, "Refinery against DataTrove"). These are the same calls in the same order
    (meta tags, then JSON-LD, then the <title>/<h1> heuristics); none changes the tree.
    """
    meta = examine_meta(tree)
    try:
        meta = extract_meta_json(tree, meta)
    except Exception:  # as extract_metadata: bugs in trafilatura's JSON-LD parsing
        pass
    title = meta.title or extract_title(tree)
    return _clean(title), meta.url or extract_url(tree, url)


def date_of(tree, url: str | None) -> str | None:
    """htmldate's date with trafilatura's settings and the URL `title_and_url` found. htmldate
    searches a deep copy of the tree, so this may run before or after the text extraction."""
    return _clean(find_date(tree, **{**_date_params(), "url": url}))


def title_and_date(tree, url: str | None) -> tuple[str | None, str | None]:
    """The title and date `bare_extraction(with_metadata=True)` finds, and nothing else."""
    title, date_url = title_and_url(tree, url)
    return title, date_of(tree, date_url)


def cheap_text(html: str) -> str:
    """The page's main text by resiliparse's heuristics: about 1.5 CPU ms a page against
    trafilatura's 17 (bench/RESULTS.md), rougher (ScrapingHub F1 0.898), so it only screens
    (the language prefilter) and measures what trafilatura should find (`Extractor`'s fallback).
    A page resiliparse cannot parse has no cheap text: trafilatura still gets it."""
    try:
        return extract_plain_text(HTMLTree.parse(html), main_content=True)
    except Exception:  # HTMLParserException and kin: the cheap view is only a hint
        return ""


class Extractor:
    """trafilatura with a size cap, a per-document timeout and a fallback for emptied articles.

    Defaults: `favor_precision=True` as DataTrove's Trafilatura step uses, so navigation and
    comment blocks are left out at some cost in recall; 2 MB of HTML covers the
    99.9th percentile of Common Crawl HTML responses (which CC itself truncates at 1 MiB
    of payload since 2019), and 5 CPU s is a hundred times the median parse time measured on
    the crawl sample (bench/RESULTS.md).

    Precision mode sometimes returns nothing or one paragraph of an article the default mode
    extracts whole. With `fallback_ratio`, a precision text shorter than that share of the
    cheap main-content text (`cheap_text`) is extracted again in the default mode, and the
    longer of the two is kept (bench/RESULTS.md, "Shortcuts").

    `date_source`: `htmldate` (trafilatura's date search, 7.5 CPU ms a page) or `warc` (the day of
    the WARC-Date, no search). With `date_survivors_only`, htmldate runs only for a text that can
    still be kept (not empty, and allowed by the gate's `keeps`); the other rows get no date.
    """

    name = "trafilatura"  # the documents' `extractor` column

    def __init__(
        self,
        *,
        max_html_bytes: int = 2_000_000,
        timeout_s: float | None = 5.0,
        favor_precision: bool = True,
        include_tables: bool = True,
        include_comments: bool = False,
        fallback_ratio: float | None = FALLBACK_RATIO,
        date_source: Literal["htmldate", "warc"] = "htmldate",
        date_survivors_only: bool = True,
    ):
        self.max_html_bytes = max_html_bytes
        self.timeout_s = timeout_s
        self.options = dict(
            favor_precision=favor_precision,
            include_tables=include_tables,
            include_comments=include_comments,
        )
        self.fallback_ratio = fallback_ratio if favor_precision else None
        self.date_source = date_source
        self.date_survivors_only = date_survivors_only

    def __call__(
        self,
        payload: bytes,
        *,
        url: str | None = None,
        charset: str | None = None,
        truncated: bool = False,
        gate: Gate | None = None,
        warc_date: str | None = None,
    ) -> Extracted:
        if truncated or len(payload) > self.max_html_bytes:
            return Extracted(None, None, None, TOO_LARGE)
        html = decode_html(payload, charset)
        try:
            with _deadline(self.timeout_s):
                return self._extract(html, url, gate, warc_date)
        except _Timeout:
            return Extracted(None, None, None, TIMEOUT, f"no result after {self.timeout_s} CPU s")
        except Exception as exc:  # trafilatura and lxml raise many types on broken markup
            return Extracted(None, None, None, FAILED, f"{type(exc).__name__}: {exc}"[:500])

    def _extract(self, html: str, url: str | None, gate: Gate | None, warc_date: str | None) -> Extracted:
        """Gate, parse (once: metadata, then the text, as trafilatura does), text, then the date."""
        cheap = cheap_text(html) if gate is not None or self.fallback_ratio is not None else ""
        if gate is not None and (rejected := gate.page(cheap)) is not None:
            return rejected
        tree = load_html(html)
        if tree is None:
            return Extracted(None, None, None, EMPTY)
        try:
            title, date_url = title_and_url(tree, url)
            if not self.date_survivors_only:
                date = self._date(tree, date_url, warc_date)
            text = self._text(tree, url, cheap)
            if self.date_survivors_only:
                survives = text is not None and (gate is None or gate.keeps(text))
                date = self._date(tree, date_url, warc_date) if survives else None
        except (TypeError, ValueError):  # bare_extraction's own "discard" exceptions
            return Extracted(None, None, None, EMPTY)
        return Extracted(title or None, text, date or None, None if text else EMPTY)

    def _date(self, tree, url: str | None, warc_date: str | None) -> str | None:
        if self.date_source == "warc":
            return warc_date[:10] if warc_date else None  # YYYY-MM-DD, as htmldate writes it
        return date_of(tree, url)

    def _text(self, tree, url: str | None, cheap: str) -> str | None:
        """Precision mode's text; the default mode's when precision keeps too little and it has more."""
        text = self._bare(tree, url, self.options)
        ratio = self.fallback_ratio
        if ratio is None or (text is not None and len(text) >= ratio * len(cheap)):
            return text
        recall = self._bare(tree, url, {**self.options, "favor_precision": False})
        return recall if len(recall or "") > len(text or "") else text

    @staticmethod
    def _bare(tree, url: str | None, options: dict[str, Any]) -> str | None:
        """trafilatura's text of the tree (which it copies, so the tree can be extracted again)."""
        doc = trafilatura.bare_extraction(tree, url=url, with_metadata=False, **options)
        return ((doc.text if doc is not None else None) or "").strip() or None

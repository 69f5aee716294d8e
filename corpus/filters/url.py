"""Reject documents by their URL: blocklisted domains, banned words and subwords.

Penedo et al. 2024 ("The FineWeb Datasets", base filtering) start with DataTrove's
`filters/url_filter.py`, built on the UT1 blacklist's `adult` category
(dsi.ut-capitole.fr/blacklists), which we do not download. Here every list is a plain file
named in the config; the shipped ones in `conf/url/` are short curated examples, and a user
adds their own (UT1's `adult/domains` file can be listed as is).

Rules, in order:
- `url:blocklist`: the URL's host, or any parent domain of it (`a.b.example` → `b.example` →
  `example`), or the document's registered `domain`, is in a blocklist file. DataTrove matches
  the registered domain and the full host only; matching every parent means a listed domain
  covers all its subdomains.
- `url:banned_word`: a hard-banned word is a whole token of the URL, lowercased and split on
  every character that is not `a-z0-9` (scheme, host, path and query).
- `url:soft_banned_words`: at least `soft_word_threshold` (2, as DataTrove) distinct
  soft-banned words are tokens of the URL.
- `url:banned_subword`: a banned subword is a substring of host + path, lowercased, with every
  character but `a-z0-9` removed (dots, dashes, slashes), so "sex-cam.example" and
  "example/sexcam" both contain "sexcam". DataTrove searches the whole normalized URL; leaving
  out the query keeps tracking parameters from matching.

List files: one entry per line, lowercase; `#` starts a comment; blank lines are ignored. Word
and subword entries are normalized like the URL (only `a-z0-9` kept). The files are read once,
in `__init__`, into frozensets: the filter is pickled to Spark executors and reads no file after.
"""

import io
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from corpus.filters.checks import Check
from corpus.fs import open_input

BLOCKLIST = "url:blocklist"
BANNED_WORD = "url:banned_word"
SOFT_BANNED_WORDS = "url:soft_banned_words"
BANNED_SUBWORD = "url:banned_subword"

LISTS = Path(__file__).resolve().parents[2] / "conf" / "url"  # the repo's conf/url/
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


class UrlFilter:
    """Reject on the first matching rule in the order of `RULES`. An empty tuple of files
    switches a list off; `soft_word_threshold=None` switches the soft-word rule off."""

    name = "url"
    SIGNALS: ClassVar[dict[str, type]] = {
        "url_blocklisted_domain": str,  # the listed domain that matched, else None
        "url_banned_word": str,  # the first (alphabetically) banned token, else None
        "url_soft_banned_words": int,  # distinct soft-banned tokens
        "url_banned_subword": str,  # the first (alphabetically) banned subword, else None
    }
    RULES: ClassVar[tuple[str, ...]] = (BLOCKLIST, BANNED_WORD, SOFT_BANNED_WORDS, BANNED_SUBWORD)
    CHECKS: ClassVar[tuple[Check, ...]] = (  # the order of `decide`; see corpus/filters/checks.py
        Check(BLOCKLIST, "url_blocklisted_domain", "blocklist_files", "found"),
        Check(BANNED_WORD, "url_banned_word", "banned_words_files", "found"),
        Check(SOFT_BANNED_WORDS, "url_soft_banned_words", "soft_word_threshold", ">="),
        Check(BANNED_SUBWORD, "url_banned_subword", "banned_subwords_files", "found"),
    )

    def __init__(
        self,
        *,
        blocklist_files: tuple[str, ...] = (str(LISTS / "blocklist_domains.txt"),),
        banned_words_files: tuple[str, ...] = (str(LISTS / "banned_words.txt"),),
        soft_banned_words_files: tuple[str, ...] = (str(LISTS / "soft_banned_words.txt"),),
        banned_subwords_files: tuple[str, ...] = (str(LISTS / "banned_subwords.txt"),),
        soft_word_threshold: int | None = 2,
    ):
        self.blocklist = frozenset(e.strip(".") for e in read_list(blocklist_files))
        self.banned_words = frozenset(normalize(e) for e in read_list(banned_words_files)) - {""}
        self.soft_banned_words = frozenset(normalize(e) for e in read_list(soft_banned_words_files)) - {""}
        # sorted, so the reported subword does not depend on set order
        self.banned_subwords = tuple(sorted({normalize(e) for e in read_list(banned_subwords_files)} - {""}))
        self.soft_word_threshold = soft_word_threshold

    def signals(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        url = doc.get("url")
        url = url.strip().lower() if isinstance(url, str) else ""
        host, path = _host_and_path(url)
        domain = doc.get("domain")
        candidates = _parents(host) + (_parents(domain.lower()) if isinstance(domain, str) else [])
        tokens = set(_NOT_ALNUM.split(url))
        banned = tokens & self.banned_words
        flat = normalize(host + path)
        return {
            "url_blocklisted_domain": next((d for d in candidates if d in self.blocklist), None),
            "url_banned_word": min(banned) if banned else None,
            "url_soft_banned_words": len(tokens & self.soft_banned_words),
            "url_banned_subword": next((s for s in self.banned_subwords if s in flat), None),
        }

    def decide(self, signals: Mapping[str, Any]) -> str | None:
        if signals["url_blocklisted_domain"] is not None:
            return BLOCKLIST
        if signals["url_banned_word"] is not None:
            return BANNED_WORD
        threshold = self.soft_word_threshold
        if threshold is not None and signals["url_soft_banned_words"] >= threshold:
            return SOFT_BANNED_WORDS
        if signals["url_banned_subword"] is not None:
            return BANNED_SUBWORD
        return None

    def filter(self, doc: Mapping[str, Any]) -> str | None:
        return self.decide(self.signals(doc))


def read_list(paths: Iterable[str]) -> set[str]:
    """The entries of list files (local paths or URIs, corpus/fs.py): one per line, lowercased, `#`
    comments and blanks dropped."""
    entries: set[str] = set()
    for path in paths:
        with io.TextIOWrapper(open_input(path), encoding="utf-8") as f:
            for line in f:
                entry = line.split("#", 1)[0].strip().lower()
                if entry:
                    entries.add(entry)
    return entries


def normalize(text: str) -> str:
    """Lowercase `a-z0-9` only: "Sex-Cam.example" → "sexcamexample"."""
    return _NOT_ALNUM.sub("", text.lower())


# Ports a scheme implies: "http://a.example:80/" is "http://a.example/".
DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_url(url: str | None) -> str | None:
    """The URL as deduped compares fetches (`duplicate:url`); None when there is no host.

    Scheme and host lowercased (host without a trailing dot), the scheme's default port, the
    user info, the fragment and trailing slashes of the path dropped. The query is kept as
    written: `?utm_source=x` copies are other URLs, left to exact and near dedup.
    "HTTPS://Example.COM:443/a/#top" → "https://example.com/a".
    """
    if not isinstance(url, str) or not url.strip():
        return None
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:  # an unclosed IPv6 bracket or a port that is not a number
        return None
    if not host:
        return None
    scheme = parts.scheme.lower()
    netloc = f"[{host}]" if ":" in host else host.rstrip(".")  # an IPv6 address keeps its brackets
    if port is not None and port != DEFAULT_PORTS.get(scheme):
        netloc += f":{port}"
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}{query}"


def _host_and_path(url: str) -> tuple[str, str]:
    """Host (no port, no trailing dot) and path of a URL; ("", "") for what does not parse."""
    if not url:
        return "", ""
    if "://" not in url and not url.startswith("//"):
        url = "//" + url  # "example.com/a" has no scheme; without "//" urlsplit reads it as a path
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:  # e.g. an unclosed IPv6 bracket: "http://[::1"
        return "", ""
    return host.rstrip("."), parts.path


def _parents(host: str) -> list[str]:
    """`a.b.example` → [`a.b.example`, `b.example`, `example`]: the most specific first."""
    host = host.strip(".")
    if not host:
        return []
    labels = host.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]

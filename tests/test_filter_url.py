import pickle

import pytest

from corpus.filters.url import (
    BANNED_SUBWORD,
    BANNED_WORD,
    BLOCKLIST,
    SOFT_BANNED_WORDS,
    UrlFilter,
    canonical_url,
)


@pytest.fixture
def lists(tmp_path):
    files = {
        "blocklist_files": "# adult\nbad.example\n\nEVIL.test  # inline comment\n",
        "banned_words_files": "# hard\nbadword\n",
        "soft_banned_words_files": "hot\nspicy\nadult\n",
        "banned_subwords_files": "sexcam\n",
    }
    paths = {}
    for key, text in files.items():
        path = tmp_path / f"{key}.txt"
        path.write_text(text)
        paths[key] = (str(path),)
    return paths


@pytest.fixture
def url_filter(lists) -> UrlFilter:
    return UrlFilter(**lists)


def reject(f: UrlFilter, url, domain=None) -> str | None:
    return f.filter({"url": url, "domain": domain, "text": "ignored"})


def test_clean_url_is_kept(url_filter):
    assert reject(url_filter, "https://www.example.org/news/2024/rivers.html", "example.org") is None


def test_listed_domain_is_blocked(url_filter):
    assert reject(url_filter, "https://bad.example/page", "bad.example") == BLOCKLIST


def test_subdomain_is_blocked_by_its_parent_domain(url_filter):
    assert reject(url_filter, "http://sub.bad.example:8080/x") == BLOCKLIST
    assert url_filter.signals({"url": "http://a.sub.bad.example."})["url_blocklisted_domain"] == "bad.example"


def test_domain_that_only_ends_with_a_listed_name_is_not_blocked(url_filter):
    assert reject(url_filter, "https://notbad.example/") is None


def test_registered_domain_column_is_checked_too(url_filter):
    assert reject(url_filter, None, "evil.test") == BLOCKLIST


def test_comments_blanks_and_case_in_list_files_are_ignored(url_filter):
    assert url_filter.blocklist == frozenset({"bad.example", "evil.test"})


def test_banned_word_as_a_whole_token_rejects(url_filter):
    assert reject(url_filter, "https://example.com/BadWord/1") == BANNED_WORD
    assert reject(url_filter, "https://example.com/badwords") is None


def test_one_soft_banned_word_kept_two_distinct_rejected(url_filter):
    assert reject(url_filter, "https://example.com/hot-weather/hot") is None
    assert reject(url_filter, "https://example.com/hot-spicy-food") == SOFT_BANNED_WORDS


def test_soft_word_threshold_none_switches_the_rule_off(lists):
    assert reject(UrlFilter(**lists, soft_word_threshold=None), "https://hot.spicy.adult/") is None


def test_banned_subword_matches_across_dots_and_dashes_in_host_and_path(url_filter):
    assert reject(url_filter, "https://live.sex-cam.example/") == BANNED_SUBWORD
    assert reject(url_filter, "https://example.com/se.x-cam/") == BANNED_SUBWORD
    assert reject(url_filter, "https://example.com/search?q=sexcam") is None


@pytest.mark.parametrize("url", [None, "", "not a url", "http://[::1", "://", "mailto:a@b", 12345])
def test_garbage_url_does_not_raise(url_filter, url):
    signals = url_filter.signals({"url": url, "domain": None})
    assert signals["url_blocklisted_domain"] is None and signals["url_soft_banned_words"] == 0


def test_empty_file_lists_switch_every_check_off():
    f = UrlFilter(
        blocklist_files=(), banned_words_files=(), soft_banned_words_files=(), banned_subwords_files=()
    )
    assert reject(f, "https://bad.example/badword/hot/spicy/sexcam") is None


def test_pickled_filter_needs_no_list_files(lists, tmp_path):
    f = UrlFilter(**lists)
    for path in tmp_path.glob("*.txt"):
        path.unlink()
    assert reject(pickle.loads(pickle.dumps(f)), "https://sub.bad.example/") == BLOCKLIST


def test_shipped_lists_load_and_block_a_well_known_adult_domain():
    f = UrlFilter()
    assert reject(f, "https://www.pornhub.com/", "pornhub.com") == BLOCKLIST
    assert reject(f, "https://en.wikipedia.org/wiki/River", "wikipedia.org") is None


def test_signals_are_exactly_the_declared_ones(url_filter):
    assert set(url_filter.signals({"url": "https://x.org"})) == set(UrlFilter.SIGNALS)


def test_canonical_url_folds_case_default_port_fragment_and_trailing_slash():
    same = [
        "https://example.com/a",
        "HTTPS://Example.COM/a/",
        "https://example.com:443/a#top",
        "https://user@example.com./a//",
    ]
    assert {canonical_url(u) for u in same} == {"https://example.com/a"}
    assert (
        canonical_url("http://example.com:80") == canonical_url("http://example.com/") == "http://example.com"
    )


def test_canonical_url_keeps_query_other_ports_and_schemes_apart():
    urls = [
        "https://example.com/a",
        "https://example.com/a?utm_source=feed",
        "https://example.com/a?b=1&a=2",
        "https://example.com:8443/a",
        "http://example.com/a",
        "https://example.com/A",
    ]
    assert len({canonical_url(u) for u in urls}) == len(urls)
    assert canonical_url("https://example.com/a?utm_source=feed") == "https://example.com/a?utm_source=feed"


@pytest.mark.parametrize("url", [None, "", "   ", "example.com/a", "http://[::1", "http://a.example:99999/"])
def test_canonical_url_is_none_without_a_parseable_host(url):
    assert canonical_url(url) is None

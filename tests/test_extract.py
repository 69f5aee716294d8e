import time

import trafilatura

from corpus.extract import EMPTY, TIMEOUT, TOO_LARGE, Extractor, decode_html

ARTICLE = (
    "<html><head><title>A page</title></head><body><nav>Home | About</nav><article>"
    + "".join(f"<p>This is paragraph {i} of a real article about rivers and the sea.</p>" for i in range(12))
    + "</article></body></html>"
)


def test_article_text_and_title_are_extracted():
    result = Extractor()(ARTICLE.encode(), url="https://example.com/a")
    assert result.reject is None
    assert result.title == "A page"
    assert "paragraph 3 of a real article" in result.text


def test_html_over_the_size_cap_is_rejected_unparsed():
    assert Extractor(max_html_bytes=100)(ARTICLE.encode()).reject == TOO_LARGE


def test_truncated_payload_is_rejected_as_too_large():
    assert Extractor()(b"<html></html>", truncated=True).reject == TOO_LARGE


def test_page_without_main_text_is_empty():
    assert Extractor()(b"<html><head><title>t</title></head><body><img src=x></body></html>").reject == EMPTY


def test_slow_extraction_hits_the_timeout(monkeypatch):
    def stuck(*args, **kwargs):
        while True:  # a parse that never ends burns CPU
            pass

    monkeypatch.setattr(trafilatura, "bare_extraction", stuck)
    started = time.monotonic()
    assert Extractor(timeout_s=0.05)(ARTICLE.encode()).reject == TIMEOUT
    assert time.monotonic() - started < 5


def spin(cpu_seconds: float) -> None:
    end = time.process_time() + cpu_seconds
    while time.process_time() < end:
        pass


def test_a_timeout_that_lands_in_a_finalizer_still_ends_the_page_and_prints_nothing(monkeypatch):
    """As in the regex module's `SetBase.__del__`: Python swallows an exception raised in a
    finalizer and prints it, so the deadline is raised again once the finalizer is done."""

    class SlowToDelete:
        def __del__(self):
            spin(0.2)  # the deadline's CPU seconds pass while Python finalizes it

    def finalizes_then_computes(*args, **kwargs):
        SlowToDelete()  # deleted at once: its __del__ runs here
        spin(0.4)  # less than the wall-clock backstop, even on a loaded machine, but past the deadline
        return {"text": "a page that finished"}

    swallowed = []
    monkeypatch.setattr("sys.unraisablehook", swallowed.append)
    monkeypatch.setattr(trafilatura, "bare_extraction", finalizes_then_computes)
    assert Extractor(timeout_s=0.05)(ARTICLE.encode()).reject == TIMEOUT
    assert swallowed == []  # nothing printed ("Exception ignored in ...")


def test_waiting_for_a_core_is_not_a_timeout(monkeypatch):
    """The deadline is CPU time: a page descheduled on a loaded machine is not a slow page."""
    real = trafilatura.bare_extraction

    def descheduled(*args, **kwargs):
        time.sleep(0.3)  # three deadlines of wall time, no CPU
        return real(*args, **kwargs)

    monkeypatch.setattr(trafilatura, "bare_extraction", descheduled)
    assert Extractor(timeout_s=0.1)(ARTICLE.encode()).reject is None


def test_page_that_waits_forever_is_stopped_by_the_wall_clock_backstop(monkeypatch):
    monkeypatch.setattr(trafilatura, "bare_extraction", lambda *args, **kwargs: time.sleep(30))
    started = time.monotonic()
    assert Extractor(timeout_s=0.05)(ARTICLE.encode()).reject == TIMEOUT
    assert time.monotonic() - started < 5


def test_declared_charset_that_fails_falls_back_to_utf8():
    assert decode_html("Grüße".encode(), "ascii") == "Grüße"


def test_meta_charset_is_used_when_the_header_has_none():
    html = '<meta charset="windows-1252"><p>caf\xe9</p>'.encode("cp1252")
    assert "café" in decode_html(html, None)

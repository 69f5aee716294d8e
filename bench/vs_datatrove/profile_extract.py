"""Where Refinery's documents stage spends its CPU, and what trafilatura's options cost in quality.

    .venv/bin/python bench/vs_datatrove/profile_extract.py [--every 2]

Reads every `--every`-th HTML 200 page of crawl-sample, then:
1. cProfile of `Extractor.__call__` (the documents stage's per-page work), CPU seconds grouped by
   what trafilatura is doing: parsing, metadata (title and date), the main extraction, its
   fallback comparison with readability/jusText, tree pruning, text output.
2. Each trafilatura setting timed (CPU ms a page) and scored with ../shared/tools/extraction_f1.py
   (ScrapingHub token F1, trafilatura-eval snippet accuracy) on the same pages:
   `full metadata` is the Extractor before the title/date step (bare_extraction with_metadata=True),
   `refinery` is the Extractor now, `fast` adds trafilatura's fast=True (no fallback extractors).
"""

import argparse
import cProfile
import glob
import pstats
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(SHARED / "tools"))

import extraction_f1  # noqa: E402
import trafilatura  # noqa: E402

from corpus.extract import Extractor, decode_html, title_and_date  # noqa: E402
from corpus.warc import WarcError, read_warc  # noqa: E402

OPTIONS = dict(favor_precision=True, include_tables=True, include_comments=False)
# cProfile functions (file suffix, name) whose cumulative time is one part of the work.
PARTS = {
    "parse HTML (load_html)": ("trafilatura/utils.py", "load_html"),
    "title and date (title_and_date)": ("corpus/extract.py", "title_and_date"),
    "main extraction (extract_content)": ("trafilatura/main_extractor.py", "extract_content"),
    "fallback comparison (readability, jusText)": ("trafilatura/external.py", "compare_extraction"),
    "tree pruning (prune_unwanted_nodes)": ("trafilatura/htmlprocessing.py", "prune_unwanted_nodes"),
    "tree cleaning (tree_cleaning)": ("trafilatura/htmlprocessing.py", "tree_cleaning"),
    "text output (xmltotxt)": ("trafilatura/xml.py", "xmltotxt"),
    "charset decoding (decode_html)": ("corpus/extract.py", "decode_html"),
}


def pages(every: int) -> list[tuple[bytes, str, str | None, str]]:
    out = []
    for path in sorted(glob.glob(str(SHARED / "data" / "crawl-sample" / "*.warc.gz"))):
        with open(path, "rb") as stream:
            for r in read_warc(stream, max_payload_bytes=2_000_000):
                if not isinstance(r, WarcError) and r.status == 200 and r.payload is not None:
                    out.append((r.payload, r.url, r.charset, r.record_id))
    return out[::every]


def full_metadata(payload: bytes, url: str, charset: str | None) -> str:
    doc = trafilatura.bare_extraction(decode_html(payload, charset), url=url, with_metadata=True, **OPTIONS)
    return (doc.text or "") if doc else ""


def refinery(payload: bytes, url: str, charset: str | None, **extra) -> str:
    tree = trafilatura.utils.load_html(decode_html(payload, charset))
    if tree is None:
        return ""
    title_and_date(tree, url)
    doc = trafilatura.bare_extraction(tree, url=url, with_metadata=False, **OPTIONS, **extra)
    return (doc.text or "") if doc else ""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--every", type=int, default=1, help="every N-th page (1: all 1,225)")
    args = parser.parse_args()
    sample = pages(args.every)
    extractor = Extractor(timeout_s=None)

    profile = cProfile.Profile()
    started = time.process_time()
    profile.enable()
    for payload, url, charset, _ in sample:
        extractor(payload, url=url, charset=charset)
    profile.disable()
    total = time.process_time() - started
    stats = pstats.Stats(profile).stats
    print(f"{len(sample)} pages, Extractor: {total:.1f} CPU s ({1000 * total / len(sample):.1f} ms a page)")
    print("| part | CPU s (cumulative, with profiler) | share |\n|---|---|---|")
    for label, (suffix, name) in PARTS.items():
        seconds = sum(v[3] for (file, _, func), v in stats.items() if file.endswith(suffix) and func == name)
        print(f"| {label} | {seconds:.1f} | {seconds / total:.0%} |")

    labels = [r for r in extraction_f1.labels(str(SHARED / "data" / "crawl-sample" / "labels.tsv"))]
    gold = extraction_f1.load_gold([str(SHARED / "data")])
    variants = {
        "full metadata (before)": full_metadata,
        "refinery (title and date only)": refinery,
        "refinery + fast=True": lambda p, u, c: refinery(p, u, c, fast=True),
    }
    print("\n| setting | CPU ms a page | ScrapingHub F1 | trafilatura-eval snippets |\n|---|---|---|---|")
    for name, extract in variants.items():
        texts = {}
        started = time.process_time()
        for payload, url, charset, record_id in sample:
            texts[record_id] = extract(payload, url, charset)
        ms = 1000 * (time.process_time() - started) / len(sample)
        scored = [r for r in labels if r["kind"] == "page" and r["record_id"] in texts]
        result = extraction_f1.score(scored, texts, gold)
        sh, te = result.get("scrapinghub", {}), result.get("trafilatura-eval", {})
        f1, snippets = sh.get("f1", 0), te.get("snippet_accuracy", 0)
        print(f"| {name} | {ms:.1f} | {f1:.3f} (n={sh.get('n')}) | {snippets:.3f} |")


if __name__ == "__main__":
    main()

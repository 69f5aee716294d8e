"""Measure the documents stage's shortcuts page by page: the language prefilter's margin and the
extraction fallback's rule.

    python bench/shortcuts.py pages 'WARC_GLOB' --out PAGES.jsonl      # one pass, every HTML 200 page
    python bench/shortcuts.py margin PAGES.jsonl --run RUN             # prefilter scores vs the run's fate
    python bench/shortcuts.py fallback PAGES.jsonl --labels LABELS     # extraction F1 of each rule
    python bench/shortcuts.py agree RUN_ON RUN_OFF                     # kept sets of two runs

`pages` records, per HTML 200 page of the WARCs: the cheap text's length and its lid.176 scores
(classifiers/prefilter.py, the documents stage's prefilter), and trafilatura's text in precision
mode (FineWeb's and DataTrove's setting) and in its default mode.
`margin` joins the pages with RUN (a `refinery run` without the prefilter: its documents and
annotated rows) by WARC-Record-ID and counts, for each margin, the pages whose best allowed-language
score falls below it (the prefilter would reject them), how many of those the run keeps, and how
many its own language ID calls allowed.
`agree` compares the annotated kept sets of a run with the shortcuts on and one with them off
(bench/configs/pipeline/shortcuts-off.yaml): Jaccard of the ids, each difference with its reject in
either run, and the kept rows whose columns differ (every column but `warc_file`).
`fallback` scores each extraction rule with ../shared/tools/extraction_f1.py (ScrapingHub token F1,
trafilatura-eval snippet accuracy) on the labelled pages, and counts the pages where the default
mode extracts text and the rule's text is empty.
"""

import argparse
import glob
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))

MARGINS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3)


def _pages(pattern: str, out: str) -> None:
    import trafilatura

    from classifiers.langid import language_probabilities, lid176_path, load_model
    from corpus.extract import cheap_text, decode_html
    from corpus.filters.language import LanguagePrefilter
    from corpus.warc import WarcError, read_warc

    options = dict(include_tables=True, include_comments=False, with_metadata=False)
    lid, signals = load_model(lid176_path()), LanguagePrefilter(languages=None).signals
    with open(out, "w") as sink:
        for path in sorted(glob.glob(pattern)):
            with open(path, "rb") as stream:
                for r in read_warc(stream, max_payload_bytes=2_000_000):
                    if isinstance(r, WarcError) or r.rec_type != "response" or r.status != 200:
                        continue
                    if r.payload is None or r.payload_truncated:
                        continue
                    html = decode_html(r.payload, r.charset)
                    cheap = cheap_text(html)
                    texts = {}
                    for mode, precision in (("precision", True), ("default", False)):
                        try:
                            doc = trafilatura.bare_extraction(html, favor_precision=precision, **options)
                        except Exception:  # as the Extractor: broken markup
                            doc = None
                        texts[mode] = ((doc.text if doc else None) or "").strip()
                    scores = language_probabilities(lid, cheap) or {}
                    top = signals({"lang_probabilities": scores})["lang_prefilter_lang"]
                    scores = {k: round(v, 5) for k, v in scores.items() if v >= 1e-5}
                    row = {"record_id": r.record_id, "url": r.url, "cheap_chars": len(cheap)}
                    row |= {"top": top, "scores": scores, **texts}
                    sink.write(json.dumps(row) + "\n")


def _read(path: str) -> list[dict]:
    return [json.loads(line) for line in open(path)]


def _margin(pages_path: str, run: str, languages: list[str]) -> None:
    import duckdb

    pages = _read(pages_path)
    fate = dict(
        duckdb.sql(
            f"SELECT warc_record_id, struct_pack(reject := reject, lang := lang) FROM read_parquet("
            f"['{run}/annotated/*/*.parquet', '{run}/documents/rejected/*.parquet'])"
        ).fetchall()
    )
    print(f"{len(pages)} pages; {sum(1 for p in pages if fate.get(p['record_id']))} in the run")
    print("| margin | rejected by the prefilter | share | kept by the run | run's lang allowed |")
    print("|---|---|---|---|---|")
    for margin in MARGINS:
        below = [p for p in pages if p["top"] is not None and _best(p, languages) < margin]
        kept = [p for p in below if p["record_id"] in fate and fate[p["record_id"]]["reject"] is None]
        allowed = [p for p in below if (fate.get(p["record_id"]) or {}).get("lang") in languages]
        print(f"| {margin} | {len(below)} | {len(below) / len(pages):.3f} | {len(kept)} | {len(allowed)} |")
        for p in kept + allowed:
            f = fate.get(p["record_id"])
            print(f"|  | {p['url']} | best {_best(p, languages):.3f} ({p['top']}) | {f} | |")


def _best(page: dict, languages: list[str]) -> float:
    return max((page["scores"].get(lang, 0.0) for lang in languages), default=0.0)


RULES = {
    "precision": lambda p, r: p["precision"],
    "default": lambda p, r: p["default"],
    "empty -> default": lambda p, r: p["precision"] or p["default"],
    # the Extractor's rule (corpus/extract.py): default mode when precision keeps less than `r` of
    # the cheap main-content text's characters, and its text when longer
    "shorter -> longer": lambda p, r: (
        max(p["precision"], p["default"], key=len)
        if len(p["precision"]) < r * p["cheap_chars"]
        else p["precision"]
    ),
}


def _fallback(pages_path: str, labels: str, ratios: list[float]) -> None:
    sys.path.insert(0, str(SHARED / "tools"))
    import extraction_f1

    pages = _read(pages_path)
    gold = extraction_f1.load_gold([str(SHARED / "data")])
    rows = [r for r in extraction_f1.labels(labels) if r["kind"] == "page"]
    columns = "rule | ratio | ScrapingHub F1 | precision | recall | snippet accuracy | empty, default not"
    print(f"| {columns} |")
    print("|---|---|---|---|---|---|---|")
    for name, rule in RULES.items():
        for ratio in ratios if name == "shorter -> longer" else [None]:
            texts = {p["record_id"]: rule(p, ratio) for p in pages}
            got = extraction_f1.score(rows, texts, gold)
            sh, te = got["scrapinghub"], got["trafilatura-eval"]
            lost = sum(1 for p in pages if p["default"] and not texts[p["record_id"]])
            print(
                f"| {name} | {ratio or ''} | {sh['f1']:.4f} | {sh['precision']:.4f} | {sh['recall']:.4f} "
                f"| {te['snippet_accuracy']:.4f} | {lost} |"
            )


def _agree(on: str, off: str) -> None:
    import duckdb

    def rows(run: str) -> dict[str, dict]:
        con = duckdb.connect()
        result = con.execute(
            f"SELECT * EXCLUDE (warc_file) FROM read_parquet('{run}/annotated/*/*.parquet') ORDER BY id"
        )
        names = [d[0] for d in result.description]
        found = {r[0]: dict(zip(names, r, strict=True)) for r in result.fetchall()}
        early = con.execute(
            f"SELECT id, url, reject FROM read_parquet('{run}/documents/rejected/*.parquet')"
        ).fetchall()
        return found | {i: {"id": i, "url": u, "reject": r, "stage": "documents"} for i, u, r in early}

    a, b = rows(on), rows(off)
    kept_a = {i for i, r in a.items() if r["reject"] is None}
    kept_b = {i for i, r in b.items() if r["reject"] is None}
    union = kept_a | kept_b
    jaccard = len(kept_a & kept_b) / len(union) if union else 1.0
    print(f"kept: on {len(kept_a)}, off {len(kept_b)}, both {len(kept_a & kept_b)}, Jaccard {jaccard:.4f}")
    for i in sorted(union - (kept_a & kept_b)):
        print(f"  {a[i]['url']}: on {a.get(i, {}).get('reject')}, off {b.get(i, {}).get('reject')}")
    differ = [i for i in sorted(kept_a & kept_b) if a[i] != b[i]]
    print(f"kept rows with a differing column: {len(differ)}")
    for i in differ[:20]:
        print(f"  {a[i]['url']}: {sorted(k for k in a[i] if a[i][k] != b[i].get(k))}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pages")
    p.add_argument("warcs")
    p.add_argument("--out", required=True)
    m = sub.add_parser("margin")
    m.add_argument("pages")
    m.add_argument("--run", required=True)
    m.add_argument("--languages", nargs="+", default=["en"])
    f = sub.add_parser("fallback")
    f.add_argument("pages")
    f.add_argument("--labels", default=str(SHARED / "data" / "crawl-sample" / "labels.tsv"))
    f.add_argument("--ratios", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.5, 0.7])
    g = sub.add_parser("agree")
    g.add_argument("on")
    g.add_argument("off")
    args = parser.parse_args()
    if args.command == "pages":
        _pages(args.warcs, args.out)
    elif args.command == "margin":
        _margin(args.pages, args.run, args.languages)
    elif args.command == "fallback":
        _fallback(args.pages, args.labels, args.ratios)
    else:
        _agree(args.on, args.off)


if __name__ == "__main__":
    main()

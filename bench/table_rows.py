"""FineWeb's line-punctuation rule on pages with tables: which decisions `line_punct_table_cells`
changes (corpus/filters/fineweb.py), on the stored text of a run's annotated stage.

    refinery run --input '../shared/data/crawl-sample/*.warc.gz' --out /tmp/crawl --stages documents,annotated
    python bench/table_rows.py /tmp/crawl

Prints each page with table rows whose FineWeb decision changes or that the run rejected for line
punctuation: its length, lines, table rows, the ratio and decision of the released rule and of
ours, and the reject the run stored (the first failing rule of every filter, FineWeb's included).
"""

import sys

import duckdb

from corpus.filters.fineweb import FineWebFilter, is_table_row


def main(run_dir: str) -> None:
    rows = (
        duckdb.connect()
        .execute(
            f"SELECT url, text, reject FROM read_parquet('{run_dir}/annotated/*/*.parquet') "
            "WHERE text IS NOT NULL ORDER BY url"
        )
        .fetchall()
    )
    released, ours = FineWebFilter(line_punct_table_cells=False), FineWebFilter()
    tabled = changed = 0
    for url, text, reject in rows:
        lines = text.split("\n")
        if not any(map(is_table_row, lines)):
            continue
        tabled += 1
        before, after = released.signals({"text": text}), ours.signals({"text": text})
        flips = released.decide(before) != ours.decide(after)
        changed += flips
        if flips or reject == "fineweb:line_punct_ratio":
            table_rows = sum(map(is_table_row, lines))
            ratios = [s["fineweb_line_punct_ratio"] for s in (before, after)]
            print(
                f"{url}\n  {len(text):,} chars, {len(lines)} lines, {table_rows} table rows; "
                f"line punct {ratios[0]:.3f} -> {ratios[1]:.3f}, "
                f"{released.decide(before)} -> {ours.decide(after)}; stored reject {reject}"
            )
    print(f"{len(rows):,} documents, {tabled} with table rows, {changed} FineWeb decisions changed")


if __name__ == "__main__":
    main(sys.argv[1])

"""The deduped stage with `paragraphs` on: counted over the documents dedup keeps, stripped, emptied."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from corpus.manifest import write_json_atomic
from corpus.paragraphs import PARAGRAPHS
from corpus.schema import to_table
from jobs import deduped
from jobs.config import DedupedConfig, ParagraphDedupConfig, PipelineConfig

pytestmark = pytest.mark.spark
NAV, COOKIES, SHARE = "Home | About us", "We use cookies. Accept all cookies to continue.", "Share"


def docs() -> list[dict]:
    """Five pages of one template (navigation, cookie banner) around their own story; one page of
    the template only; an article copied four times (one copy survives dedup); a page repeating
    `SHARE` that one other page also carries."""
    rng = np.random.default_rng(1)

    def story(n: int = 80) -> str:
        return " ".join(f"w{k}" for k in rng.integers(0, 5000, n))

    out = [{"id": f"page{i}", "text": f"{NAV}\n{story()}\n{COOKIES}"} for i in range(5)]
    out.append({"id": "template-only", "text": f"{NAV}\n\n{COOKIES}\n---"})
    article = f"{story()}\n{story()}"
    out += [{"id": f"copy{i}", "text": article} for i in range(4)]
    out.append({"id": "shares", "text": f"{SHARE}\n{story()}\n{SHARE}\n{SHARE}"})
    out.append({"id": "shares-too", "text": f"{story()}\n{SHARE}"})
    return [{**d, "url": f"https://example.org/{d['id']}", "quality": 0.5} for d in out]


@pytest.fixture(scope="module")
def stripped_run(spark, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("paragraphs") / "run"
    kept = run_dir / "annotated" / "kept"
    kept.mkdir(parents=True)
    rows = docs()
    for p in range(2):
        pq.write_table(to_table([dict(d) for d in rows[p::2]]), kept / f"part-{p:05d}.parquet")
    write_json_atomic(run_dir / "annotated" / "manifest.json", {"output_fingerprint": "test"})
    dcfg = DedupedConfig(paragraphs=ParagraphDedupConfig(enabled=True, min_documents=3))
    manifest = deduped.main(spark, PipelineConfig(deduped=dcfg), str(run_dir))
    out = {}
    for split in ("kept", "rejected"):
        for path in sorted((run_dir / "deduped" / split).glob("*.parquet")):
            out.update({r["id"]: r for r in pq.read_table(path).to_pylist()})
    return {d["id"]: d for d in rows}, out, manifest


def test_template_paragraphs_are_removed_from_every_page_that_carries_them(stripped_run):
    given, out, _ = stripped_run
    for i in range(5):
        row = out[f"page{i}"]
        assert row["reject"] is None and row["paragraphs_removed"] == 2
        assert row["text"] == given[f"page{i}"]["text"].split("\n")[1]  # the story alone


def test_a_page_of_template_only_is_rejected_with_its_text_kept(stripped_run):
    given, out, manifest = stripped_run
    row = out["template-only"]
    assert (row["reject"], row["paragraphs_removed"]) == (PARAGRAPHS, 2)
    assert row["text"] == given["template-only"]["text"]
    assert manifest["rejected"] == {"duplicate:exact": 3, PARAGRAPHS: 1}


def test_copies_count_once_so_an_article_copied_four_times_keeps_its_text(stripped_run):
    given, out, _ = stripped_run
    kept = [out[f"copy{i}"] for i in range(4) if out[f"copy{i}"]["reject"] is None]
    assert len(kept) == 1 and kept[0]["text"] == given["copy0"]["text"] and kept[0]["paragraphs_removed"] == 0
    # rows rejected by document-level dedup are not examined: text unchanged, no count
    dropped = [out[f"copy{i}"] for i in range(4) if out[f"copy{i}"]["reject"] is not None]
    assert all(r["paragraphs_removed"] is None and r["text"] == given["copy0"]["text"] for r in dropped)


def test_a_paragraph_repeated_inside_one_document_counts_once(stripped_run):
    given, out, _ = stripped_run
    # SHARE: 3 times in one page and once in another, 2 documents < min_documents 3
    assert out["shares"]["text"] == given["shares"]["text"] and out["shares"]["paragraphs_removed"] == 0


def test_manifest_counts_the_removed_paragraphs_and_text(stripped_run):
    given, _, manifest = stripped_run
    figures = manifest["dedup"]["paragraphs"]
    removed_chars = 5 * (len(NAV) + len(COOKIES) + 2) + len(given["template-only"]["text"])
    examined = [d for d in given.values() if not d["id"].startswith("copy") or d["id"] == "copy0"]
    assert figures == {
        "frequent_paragraphs": 2,
        "documents_carrying": 6,
        "documents_examined": 9,
        "chars_examined": sum(len(d["text"]) for d in examined),
        "documents_stripped": 6,
        "documents_emptied": 1,
        "removed": 12,
        "chars_removed": removed_chars,
    }
    assert manifest["dedup"]["params"]["paragraphs"] == {"enabled": True, "min_documents": 3, "min_words": 1}

"""`refinery why` on a small crawl run end to end: kept, duplicated, language-rejected, redacted,
redirected pages, each explained from what the stages wrote."""

import io
import json
import re
from pathlib import Path

import pytest
from cliproc import refinery
from qualitydata import reference_docs
from rich.console import Console
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from corpus.manifest import read_json, write_json_atomic
from corpus.shards import ShardReader
from corpus.tokenizer import encode_documents, load
from jobs.config import PipelineConfig
from jobs.stats import print_stats
from jobs.why import _fmt, explain, explain_gate, print_explanation, rule_rows, shard_placement

pytestmark = pytest.mark.spark

RIVER = [
    "The river starts in the hills above the town and runs for forty miles to the sea.",
    "In spring the water rises quickly, and the farmers along the banks move their animals to higher fields.",
    "Most of the year it is slow and brown, with herons standing in the shallows and waiting for fish.",
    "The old stone bridge was built in the eighteenth century and still carries the main road.",
    "Boats were once pulled upstream by horses walking on a path that you can still follow today.",
    "A mill stood beside the weir, grinding wheat for the villages until the last miller retired.",
    "Children swim near the gravel bank in summer, where the current is gentle and the water is clear.",
    "The council has planted willows along the northern bank to hold the soil when the floods come.",
    "Anglers say that the best trout are found below the bridge, in the deep pool under the arches.",
    "Every autumn a festival celebrates the river with music, food and a race of small wooden boats.",
]
CLINIC = [
    "The clinic on Market Street is open from eight in the morning until six in the evening on weekdays.",
    "Patients who need an appointment should call the reception desk at least two days in advance.",
    "The nurses can also answer questions about vaccinations, travel advice and repeat prescriptions.",
    "If you cannot reach us by telephone, please write to the practice manager with your request.",
    "Our doctors share the work of home visits, and each of them keeps two afternoons free for them.",
    "The waiting room has been repainted, and there is now a quiet corner with books for the children.",
    "For urgent problems outside our opening hours, the hospital in the next town has an emergency room.",
    "We thank all of our patients for their patience while the building work was carried out last year.",
]
CONTACT = (
    "You can reach the practice manager at jane.doe@clinic-example.org or on 020 7946 0958 during the day."
)
GERMAN = [
    "Der Fluss entspringt in den Hügeln oberhalb der Stadt und fließt vierzig Kilometer bis zum Meer.",
    "Im Frühling steigt das Wasser schnell, und die Bauern bringen ihre Tiere auf die höheren Felder.",
    "Die alte Steinbrücke wurde im achtzehnten Jahrhundert gebaut und trägt noch immer die Hauptstraße.",
    "Jedes Jahr im Herbst feiert das Dorf den Fluss mit Musik, Essen und einem Rennen kleiner Holzboote.",
    "Kinder baden im Sommer an der Kiesbank, wo die Strömung sanft und das Wasser ganz klar ist.",
    "Die Gemeinde hat Weiden am Nordufer gepflanzt, damit der Boden bei Hochwasser gehalten wird.",
]
URLS = {
    "river": "https://river.example/history",
    "near": "https://mirror.example/river-history",
    "clinic": "https://clinic.example/opening-hours",
    "german": "https://fluss.example/geschichte",
    "old": "https://river.example/old-history",
    "blocked": "https://www.cam4.com/river",  # conf/url/blocklist_domains.txt
}
CONFIG = {
    # no language prefilter: the German page reaches annotated, whose filter table is shown
    "documents": {"language_prefilter_margin": None},
    "annotated": {"quality": {"enabled": False}},
    "mixed": {"repeats": {"crawl": 2.0}},
    "tokenizer": {"vocab_size": 300},
    # several train shards: a document's two copies can land in different ones
    "shards": {"shard_tokens": 4000, "valid_fraction": 0.2},
}


LIBRARY = 8  # pages of reference prose, so the shards stage has copies to spread over its shards
PAGE_CHARS = 2500


def library_pages() -> list[list[str]]:
    """Paragraphs of bundled public-domain prose (data/quality/), about PAGE_CHARS a page."""
    pages = []
    for doc in reference_docs(LIBRARY):
        paragraphs = [line for line in doc.text.splitlines() if len(line) > 80]
        while sum(map(len, paragraphs)) > PAGE_CHARS and len(paragraphs) > 1:
            paragraphs.pop()
        pages.append(paragraphs)
    return pages


def page(title: str, paragraphs: list[str]) -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>{body}</article>"
        "</body></html>"
    ).encode()


def write_crawl(path: Path) -> None:
    """The river page fetched twice (a URL duplicate: the later fetch is kept), a near copy with one
    word changed, a page with an e-mail address and a phone number, a German page and a redirect."""
    near = [RIVER[0].replace("forty", "fifty"), *RIVER[1:]]
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=True)

        def response(url: str, date: str, status: str, body: bytes, headers=()) -> None:
            http = StatusAndHeaders(
                status, [("Content-Type", "text/html; charset=utf-8"), *headers], protocol="HTTP/1.1"
            )
            record = writer.create_warc_record(
                url,
                "response",
                payload=io.BytesIO(body),
                http_headers=http,
                warc_headers_dict={"WARC-Date": f"2025-01-{date}T00:00:00Z"},
            )
            writer.write_record(record)

        response(URLS["river"], "01", "200 OK", page("The river", RIVER))
        response(URLS["river"], "02", "200 OK", page("The river", RIVER))
        response(URLS["near"], "03", "200 OK", page("The river", near))
        response(URLS["clinic"], "04", "200 OK", page("Opening hours", [*CLINIC[:4], CONTACT, *CLINIC[4:]]))
        response(URLS["german"], "05", "200 OK", page("Der Fluss", GERMAN))
        response(URLS["old"], "06", "301 Moved Permanently", b"", [("Location", URLS["river"])])
        response(URLS["blocked"], "06", "200 OK", page("The river", RIVER[:5]))
        for i, paragraphs in enumerate(library_pages()):
            response(f"https://library.example/text-{i}", "07", "200 OK", page(f"Text {i}", paragraphs))


@pytest.fixture(scope="module")
def run_dir(spark, tmp_path_factory) -> Path:
    from jobs import annotated, deduped, documents, mixed, shards, tokenizer

    run = tmp_path_factory.mktemp("why")
    crawl = run / "crawl.warc.gz"
    write_crawl(crawl)
    cfg = PipelineConfig.model_validate(CONFIG)
    write_json_atomic(run / "run.json", {"config": cfg.model_dump(mode="json"), "inputs": [str(crawl)]})
    documents.main(spark, cfg, [str(crawl)], str(run), "crawl")
    for stage in (annotated, deduped, mixed, tokenizer, shards):
        stage.main(spark, cfg, str(run))
    return run


def only(run_dir: Path, key: str) -> dict:
    docs = explain(run_dir, key)["documents"]
    assert len(docs) == 1, docs
    return docs[0]


def failed(doc: dict) -> list[str]:
    return [c["rule"] for s in doc["annotated"]["steps"] for c in s["checks"] if c["result"] == "fail"]


def test_kept_page_passes_every_check_and_reaches_the_shards(run_dir):
    doc = explain(run_dir, URLS["river"])["documents"][1]  # the later fetch: kept by URL dedup
    assert doc["documents"]["warc_file"].endswith("crawl.warc.gz") and doc["documents"]["reject"] is None
    assert doc["annotated"]["lang"] == "en" and doc["annotated"]["lang_score"] > 0.9
    assert failed(doc) == [] and doc["annotated"]["reject"] is None
    gopher = next(s for s in doc["annotated"]["steps"] if s["step"] == "gopher_quality")
    words = next(c for c in gopher["checks"] if c["rule"] == "gopher_quality:too_few_words")
    assert words["threshold"] == 50 and words["value"] > 150 and words["result"] == "pass"
    assert doc["deduped"]["reject"] is None and doc["deduped"]["cluster_size"] == 2  # with the near copy
    assert doc["mixed"] == {"bucket": "crawl", "repeats": 2, "reject": None}
    assert doc["shards"]["split"] in ("train", "valid") and doc["fate"].startswith("kept:")


def test_a_url_fetched_twice_is_explained_once_per_fetch(run_dir):
    first, second = explain(run_dir, URLS["river"])["documents"]
    assert first["documents"]["fetch_time"] < second["documents"]["fetch_time"]
    assert first["fate"] == "rejected at deduped: duplicate:url"
    assert first["deduped"]["kept"] == {"id": second["id"], "url": URLS["river"]}
    folded = {d["url"]: d["reject"] for d in second["deduped"]["duplicates"]}
    assert folded == {URLS["river"]: "duplicate:url", URLS["near"]: "duplicate:near"}
    assert first["mixed"] is None  # not reached


def test_near_duplicate_names_the_kept_representative(run_dir):
    doc = only(run_dir, URLS["near"])
    assert doc["fate"] == "rejected at deduped: duplicate:near"
    assert doc["deduped"]["kept"]["url"] == URLS["river"] and doc["deduped"]["cluster_size"] == 2
    assert (
        doc["deduped"]["exact_hash"]
        != explain(run_dir, URLS["river"])["documents"][1]["deduped"]["exact_hash"]
    )


def test_language_rejection_shows_the_failing_check_and_its_threshold(run_dir):
    doc = only(run_dir, URLS["german"])
    assert doc["fate"] == "rejected at annotated: lang:not_allowed"
    language = next(s for s in doc["annotated"]["steps"] if s["step"] == "language")
    check = next(c for c in language["checks"] if c["rule"] == "lang:not_allowed")
    assert (check["value"], check["threshold"], check["result"]) == ("de", ["en"], "fail")
    assert failed(doc)[0] == "lang:not_allowed" and doc["annotated"]["thresholds_agree"]
    assert doc["deduped"] is None and doc["mixed"] is None


def test_a_url_rejected_page_is_explained_at_documents_before_extraction(run_dir):
    doc = only(run_dir, URLS["blocked"])
    assert doc["fate"] == "rejected at documents: url:blocklist" and doc["annotated"] is None
    (check,) = doc["documents"]["before_extraction"]
    assert (check["signal"], check["value"]) == ("url_blocklisted_domain", "cam4.com")
    assert doc["documents"]["text_chars"] is None
    console = Console(width=140, record=True, force_terminal=False)
    print_explanation(explain(run_dir, URLS["blocked"]), console)
    assert "url_blocklisted_domain = cam4.com in blocklist_domains.txt" in console.export_text()


def test_a_prefiltered_page_is_explained_by_its_score_against_the_margin():
    row = {"reject": "lang:not_allowed", "signals": {"lang_prefilter_allowed_score": 0.004}}
    (check,) = explain_gate(row, {"documents": {"language_prefilter_margin": 0.1}})
    assert (check["value"], check["op"], check["threshold"]) == (0.004, "<", 0.1)
    assert explain_gate({"reject": "extract:empty", "signals": None}, {}) == []


def test_pii_redacted_page_shows_counts_and_the_placeholders_in_context(run_dir):
    doc = only(run_dir, URLS["clinic"])
    assert doc["annotated"]["pii"] == {"email": 1, "phone": 1}
    snippets = " ".join(doc["annotated"]["pii_snippets"])
    assert "<EMAIL>" in snippets and "<PHONE>" in snippets and "jane.doe" not in snippets
    assert doc["fate"].startswith("kept:")
    console = Console(width=140, record=True, force_terminal=False)
    print_explanation(explain(run_dir, URLS["clinic"]), console)
    assert f"{doc['deduped']['cluster_id']} (1 document)" in console.export_text()  # a cluster of one


def test_shard_placement_names_the_shards_that_hold_the_copies(run_dir):
    manifest = read_json(run_dir / "shards" / "manifest.json")
    assert len(manifest["splits"]["train"]) > 1  # copies can land in different shards
    tok = load(run_dir / "tokenizer" / "tokenizer.json")
    con_rows = [only(run_dir, URLS["clinic"]), explain(run_dir, URLS["river"])["documents"][1]]
    for doc in con_rows:
        text = explain(run_dir, doc["id"])["documents"][0]
        placement = shard_placement(doc["id"], text["mixed"]["repeats"], manifest)
        assert placement == doc["shards"]
        ids = encode_documents(tok, [_mixed_text(run_dir, doc["id"])])[0]
        found = []
        for entry in manifest["splits"][placement["split"]]:
            reader = ShardReader.open(run_dir / "shards" / entry["name"])
            found += [entry["name"]] * sum(reader[i].tolist() == ids for i in range(len(reader)))
        assert sorted(found) == sorted(placement["shards"]), (found, placement)


def _mixed_text(run_dir: Path, doc_id: str) -> str:
    from jobs.stats import connect

    return connect(run_dir).execute("SELECT text FROM mixed WHERE id = ?", [doc_id]).fetchone()[0]


def test_redirect_is_not_a_document_and_warc_scan_says_why(run_dir):
    result = explain(run_dir, URLS["old"])
    assert result["documents"] == [] and "--warc" in result["hint"]
    scanned = explain(run_dir, URLS["old"], warc=True)
    assert [(r["type"], r["status"]) for r in scanned["warc_records"]] == [("response", 301)]
    assert "redirect (HTTP 301)" in scanned["hint"]


def test_a_document_is_found_by_its_id_as_by_its_url(run_dir):
    by_url = only(run_dir, URLS["german"])
    assert only(run_dir, by_url["id"]) == by_url


def test_tables_show_the_rule_value_and_threshold(run_dir):
    console = Console(width=140, record=True, force_terminal=False)
    print_explanation(explain(run_dir, URLS["german"]), console)
    out = console.export_text()
    assert "rejected at annotated: lang:not_allowed" in out
    assert "not_allowed" in out and "not in (en)" in out and "fail ← reject" in out


# A row of the filter table at 80 columns, and a line continuing its condition
NARROW_ROW = re.compile(r"^ (\S+) +(\S+) +(.+?) {2,}(pass|fail|off|reject)$")
CONTINUED = re.compile(r"^ {20,}(\S.*)$")


def narrow_rows(out: str) -> list[tuple[str, ...]]:
    """(rule, value, condition, result) of each filter check printed, its condition's lines joined."""
    rows: list[list[str]] = []
    for line in out.splitlines():
        if m := NARROW_ROW.match(line.rstrip()):
            rows.append(list(m.groups()))
        elif rows and (m := CONTINUED.match(line.rstrip())):
            rows[-1][2] += " " + m[1]
    return [tuple(r) for r in rows]


def test_at_80_columns_every_rule_value_and_threshold_is_printed_whole(run_dir):
    done = refinery("why", str(run_dir), URLS["german"], columns=80)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(map(len, lines)) <= 80 and not any("…" in line for line in lines)
    doc = only(run_dir, URLS["german"])
    checks = [c for step in doc["annotated"]["steps"] for c in step["checks"]]
    expected = [
        (
            c["rule"].split(":", 1)[1],
            _fmt(c["value"]),
            f"{c['signal']} {condition}",
            "reject" if c["rule"] == doc["annotated"]["reject"] else c["result"],
        )
        for step in doc["annotated"]["steps"]
        for c, condition in rule_rows(step["checks"])
    ]
    assert narrow_rows(done.stdout) == expected
    # Gopher's two bounds of the mean word length: one row, not the rule twice
    words = [row for row in expected if row[0] == "mean_word_length"]
    assert [row[2] for row in words] == ["gopher_mean_word_length < 3 or > 10"], words
    score = next(c for c in checks if c["rule"] == "lang:score" and c["signal"] == "lang_score")
    assert ("not_allowed", "de", "lang not in (en)", "reject") in expected
    assert ("score", _fmt(score["value"]), "lang_score < 0.65", "pass") in expected
    assert f"url  {URLS['german']}" in done.stdout


def test_stats_at_80_columns_keep_every_number_whole(run_dir):
    console = Console(width=80, record=True, force_terminal=False)
    print_stats(run_dir, console)
    out = console.export_text()
    assert max(map(len, out.splitlines())) <= 80 and "…" not in out
    bucket = read_json(run_dir / "mixed" / "manifest.json")["buckets"]["crawl"]
    tokens = read_json(run_dir / "shards" / "manifest.json")["buckets"]["crawl"]
    for n in (
        bucket["tokens_before"],
        bucket["tokens_after"],
        tokens["tokens_before"],
        tokens["tokens_after"],
    ):
        assert re.search(rf"(?<![\d,]){n:,}(?![\d,])", out), n


def test_a_url_not_in_the_run_is_one_error_line_and_status_2(run_dir, capsys):
    from jobs.cli import main

    assert main(["why", str(run_dir), URLS["old"]]) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {URLS['old']}: not among the documents"), lines
    # --json: the JSON on stdout as ever, the error line on stderr
    assert main(["why", str(run_dir), URLS["old"], "--json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["documents"] == []
    assert captured.err.startswith(f"error: {URLS['old']}: not among the documents")


@pytest.mark.parametrize("argv", [["why", URLS["river"], "--json"], ["why", URLS["river"]], ["stats"]])
def test_output_closed_by_its_reader_is_one_line_and_status_1(run_dir, argv):
    command, *rest = argv
    done = refinery(command, str(run_dir), *rest, close_stdout=True)
    assert done.returncode == 1
    assert done.stderr.strip() == "error: output cut short: its reader closed the pipe", done.stderr


def test_cli_json_is_the_explanation(run_dir, capsys):
    from jobs.cli import main

    assert main(["why", str(run_dir), URLS["near"], "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["documents"][0]["fate"] == "rejected at deduped: duplicate:near"


def test_quality_rule_is_held_to_the_threshold_the_stage_computed():
    from jobs.config import load_config
    from jobs.why import explain_annotated

    config = load_config().model_dump(mode="json")["annotated"]
    config["quality"].update(keep_top_fraction=0.1, threshold=None)
    row = {"lang": "en", "lang_score": 0.9, "quality": 0.2, "reject": "quality:low", "signals": {}}
    explained = explain_annotated(row, config, {"quality": {"threshold": 0.5}})
    quality = next(s for s in explained["steps"] if s["step"] == "quality")
    assert quality["checks"] == [
        {
            "rule": "quality:low",
            "signal": "quality",
            "value": 0.2,
            "op": "<",
            "param": "threshold",
            "threshold": 0.5,
            "result": "fail",
        }
    ]
    assert explained["thresholds_agree"]


def test_warc_scan_skips_documents_inputs_and_bad_files(tmp_path):
    """`--warc` reads a run's WARC inputs only: its JSONL files and the files the documents stage
    listed as bad (empty, gone since) are passed over, not read as WARCs or crashed on."""
    from jobs.why import scan_warcs

    warc = Path(__file__).resolve().parent.parent / "data" / "sample" / "commoncrawl-2019.warc.gz"
    (tmp_path / "empty.warc.gz").write_bytes(b"")
    (tmp_path / "docs.jsonl").write_text('{"text": "x", "url": "http://commoncrawl.org/"}\n')
    inputs = [str(tmp_path / "empty.warc.gz"), str(tmp_path / "docs.jsonl"), str(tmp_path / "gone.warc.gz")]
    found = scan_warcs([*inputs, str(warc)], "http://commoncrawl.org/")
    assert [(r["warc_file"], r["type"], r["status"]) for r in found] == [(str(warc), "response", 200)]


def test_deduped_panel_shows_the_paragraphs_removed_when_the_step_ran():
    from jobs.why import _deduped_parts, explain_deduped

    row = {"id": "a", "exact_hash": "h", "cluster_id": "a", "cluster_size": 1, "reject": None}
    console = Console(record=True, width=100)
    for removed, shown in ((3, True), (None, False)):
        dd = explain_deduped(None, {**row, "paragraphs_removed": removed})
        assert dd["paragraphs_removed"] == removed
        console.print(*_deduped_parts(dd))
        text = console.export_text()
        assert ("paragraphs removed  3" in text) == shown, text

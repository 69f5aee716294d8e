import json
import re
from datetime import UTC, datetime
from html.parser import HTMLParser

from corpus.manifest import write_json_atomic
from jobs.report import write_report
from jobs.stage import Stage


def make_run(run_dir):
    """Every stage's outputs written through the real stage mechanism, without Spark, plus training
    metrics of two phases and an evaluation file."""
    docs = [
        {
            "id": f"d{i}",
            "url": f"https://site{i % 3}.example/p{i}",
            "domain": f"site{i % 3}.example",
            "fetch_time": datetime(2025, 1, 1, tzinfo=UTC),
            "text": "word " * (20 * (i + 1)),
            "lang": "en" if i % 4 else "de",
            "lang_score": 0.9,
            "quality": i / 12,
            "reject": None,
        }
        for i in range(12)
    ]
    english = [d for d in docs if d["lang"] == "en"]  # d1 d2 d3 d5 d6 d7 d9 d10 d11
    # deduped: d2 and d3 folded into d1 (a cluster of 3), d6 into d5 (a cluster of 2)
    clusters = {"d1": ("d1", 3), "d2": ("d1", 3), "d3": ("d1", 3), "d5": ("d5", 2), "d6": ("d5", 2)}
    stages = (
        ("documents", docs, lambda d: {}),
        ("annotated", docs, lambda d: {"reject": None if d["lang"] == "en" else "lang:not_allowed"}),
        (
            "deduped",
            english,
            lambda d: {
                "cluster_id": clusters.get(d["id"], (d["id"], 1))[0],
                "cluster_size": clusters.get(d["id"], (d["id"], 1))[1],
                "reject": "duplicate:near" if d["id"] in ("d2", "d3", "d6") else None,
            },
        ),
        (
            "mixed",
            [d for d in english if d["id"] not in ("d2", "d3", "d6")],
            lambda d: {"bucket": d["domain"], "repeats": 2 if d["domain"] == "site1.example" else 1},
        ),
    )
    for name, rows, columns in stages:
        stage = Stage(str(run_dir), name, f"{name}-config", "i")
        stage.prepare()
        part = stage.write_part(0, [{**d, **columns(d)} for d in rows], counts={"records": 30})
        stage.commit([part], rows_in=len(rows), started=0.0)
    shards = run_dir / "shards"
    shards.mkdir()
    write_json_atomic(
        shards / "manifest.json",
        {
            "config_hash": "shards-config",
            "splits": {"train": [], "valid": []},
            "buckets": {
                "site1.example": {"tokens_before": 300, "tokens_after": 600},
                "site2.example": {"tokens_before": 200, "tokens_after": 200},
            },
        },
    )
    write_json_atomic(shards / "timing.json", {"wall_time_s": 12.4})
    write_json_atomic(run_dir / "run.json", {"inputs": ["w/a.warc.gz"], "config": {"seed": 0}, "seed": 0})
    train = run_dir / "train"
    (train / "pretrain").mkdir(parents=True)
    times = {"sft": {"wall_time_s": 125.0, "result": "b"}, "pretrain": {"wall_time_s": 300.0, "result": "a"}}
    write_json_atomic(train / "timing.json", times)
    (train / "pretrain" / "metrics.jsonl").write_text(
        "".join(f'{{"step": {s}, "tokens": {s * 64}, "loss": {5 - s / 10}, "lr": 0.01}}\n' for s in range(20))
        + '{"step": 19, "tokens": 1216, "val_loss": 3.2, "val_bpb": 1.4}\n'
    )
    (train / "align").mkdir()
    (train / "align" / "metrics.jsonl").write_text(
        "".join(f'{{"step": {s}, "loss": 0.7, "reward": {s / 10}, "kl": {s / 100}}}\n' for s in range(10))
    )
    write_json_atomic(
        train / "eval_tasks.json",
        {
            "data": "synth/test.jsonl",
            "problems": {"arithmetic": 40, "spelling": 40, "spelling+steps": 40},
            "majority": {"arithmetic": 0.1, "spelling": 0.2},
            "accuracy": {
                "runs/r/train/sft/checkpoints/step_200": {
                    "arithmetic": 0.25,
                    "spelling": 0.5,
                    "spelling+steps": 0.0,
                },
                "runs/r/train/align/checkpoints/step_50": {"arithmetic": 0.375, "spelling": 0.625},
            },
            "comparisons": [
                {
                    "earlier": "runs/r/train/sft/checkpoints/step_200",
                    "later": "runs/r/train/align/checkpoints/step_50",
                    "n": 80,
                    "wins": 9,
                    "losses": 1,
                    "p": 11 / 1024,  # (C(10,9) + C(10,10)) / 2^10
                    "tasks": {
                        "arithmetic": {"n": 40, "wins": 5, "losses": 0, "p": 1 / 32},
                        "spelling": {"n": 40, "wins": 4, "losses": 1, "p": 6 / 32},
                    },
                }
            ],
        },
    )


class References(HTMLParser):
    """The src and href values of a page and the ids it defines."""

    def __init__(self):
        super().__init__()
        self.refs, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("src", "href"):
                self.refs.append(value)
            if key == "id":
                self.ids.add(value)


def test_report_references_only_files_and_anchors_that_exist(tmp_path):
    make_run(tmp_path)
    index = write_report(tmp_path)
    parser = References()
    parser.feed(index.read_text())
    files = [r for r in parser.refs if not r.startswith("#")]
    anchors = [r[1:] for r in parser.refs if r.startswith("#")]
    assert {
        "funnel.png",
        "drops.png",
        "languages.png",
        "lengths.png",
        "quality.png",
        "clusters.png",
        "buckets.png",
        "train_pretrain.png",
        "train_align.png",
    } <= set(files)
    assert all((index.parent / ref).is_file() for ref in files)
    assert all(not re.match(r"[a-z]+:|/", ref) for ref in files), "self-contained: relative paths only"
    assert anchors and set(anchors) <= parser.ids


def test_report_shows_clusters_buckets_curves_and_evaluation(tmp_path):
    make_run(tmp_path)
    page = write_report(tmp_path).read_text()
    # clusters: 2 (sizes 3 and 2) holding 5 documents
    assert "<td>2</td><td>5</td>" in page
    # buckets before and after, and their epochs
    assert "<td>site1.example</td><td>300</td><td>600</td><td>2.000</td>" in page
    # every series of both phases, bookkeeping (lr, tokens) left out
    assert "loss 3.1, val_bpb 1.4, val_loss 3.2" in page
    assert "kl 0.09, loss 0.7, reward 0.9" in page and "lr 0.01" not in page
    assert page.index("train_pretrain.png") < page.index("train_align.png"), "phases in training order"
    # each phase's name above its charts
    assert page.index("<h3>pretrain</h3>") < page.index("train_pretrain.png") < page.index("<h3>align</h3>")
    assert page.index("<h3>align</h3>") < page.index("train_align.png")
    # the evaluation table: a row per task, the majority baseline, a column per checkpoint in
    # training order (sft before align, whatever the JSON's key order)
    assert "<th>majority</th><th>sft/step_200</th><th>align/step_50</th>" in page
    assert "<td>arithmetic</td><td>40</td><td>0.100</td><td>0.250</td><td>0.375</td>" in page
    # a task without a baseline, a checkpoint not evaluated on a task: a dash, never `nan`
    assert "<td>spelling+steps</td><td>40</td><td>–</td><td>0.000</td><td>–</td>" in page
    assert "nan" not in page
    assert "problems: synth/test.jsonl</p>" in page
    # each checkpoint against the one before it, by the names of the table's columns
    # pooled, then each task on a line of its own, indented
    assert (
        "<br>align/step_50 &gt; sft/step_200: 9 wins, 1 losses of 80, p = 0.0107"
        "<br>&nbsp;&nbsp;&nbsp;&nbsp;arithmetic: 5 wins, 0 losses of 40, p = 0.0312"
        "<br>&nbsp;&nbsp;&nbsp;&nbsp;spelling: 4 wins, 1 losses of 40, p = 0.1875</p>"
    ) in page


def test_report_header_has_run_facts_and_wall_times(tmp_path):
    make_run(tmp_path)
    page = write_report(tmp_path).read_text()
    assert "a.warc.gz" in page and "resolved sha256" in page
    assert "<td>deduped</td><td>9</td><td>6</td><td>3</td><td>deduped-conf</td>" in page
    assert "<td>shards</td>" in page and "<td>12 s</td>" in page
    # training stages, timed by `refinery run`, after the curation stages in pipeline order
    assert "<td>sft</td><td>–</td><td>–</td><td>–</td><td></td><td>2 min 05 s</td>" in page
    assert page.index("<td>shards</td>") < page.index("<td>pretrain</td>") < page.index("<td>sft</td>")


def test_epochs_are_labelled_when_decontam_removed_documents_after_mixing(tmp_path):
    from jobs.stats import epochs_label

    assert epochs_label(tmp_path) == "epochs"  # no decontam stage
    (tmp_path / "decontam").mkdir(exist_ok=True)
    write_json_atomic(tmp_path / "decontam" / "manifest.json", {"rows": {"in": 6, "kept": 6, "rejected": 0}})
    assert epochs_label(tmp_path) == "epochs"
    write_json_atomic(tmp_path / "decontam" / "manifest.json", {"rows": {"in": 6, "kept": 5, "rejected": 1}})
    assert epochs_label(tmp_path) == "epochs (after decontam removed 1 document)"


def test_report_omits_sections_the_run_has_not_reached(tmp_path):
    make_run(tmp_path)
    for path in (tmp_path / "train").glob("*/metrics.jsonl"):
        path.unlink()
    (tmp_path / "train" / "eval_tasks.json").write_text(json.dumps({"something": "else"}))
    page = write_report(tmp_path).read_text()
    assert "<h2>Funnel</h2>" in page and "<h2>Training</h2>" not in page
    assert "<h2>Evaluation</h2>" not in page


def test_related_series_share_a_panel():
    from jobs.report import _panel

    assert _panel("loss") == _panel("val_loss") == _panel("rm_loss") == "loss"
    assert _panel("kl") == _panel("val_kl") != _panel("val_length")
    assert _panel("acc_arithmetic") == _panel("val_acc_spelling") == "accuracy per task"
    assert _panel("correct") == _panel("val_acc") != _panel("val_acc_spelling")
    assert _panel("rm") == _panel("val_rm_score")  # rollouts' and held-out reward-model scores


def test_panels_are_titled_in_words():
    from jobs.report import panel_title

    assert panel_title("kl_k3") == "KL to the reference model (k3, per token)"
    assert panel_title("zero_adv") == "share of rollout groups without advantage"
    assert panel_title("winner_score_mean") == "winner score mean"  # unlisted: the key in words

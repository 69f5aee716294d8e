import json
import random
from itertools import islice

import pytest

from classifiers.quality_data import REFERENCE_SAMPLE, read_docs
from corpus.manifest import write_json_atomic
from jobs import ablate_data as data
from jobs.ablate import (
    DEFAULT_CONFIG,
    AblateConfig,
    VariantConfig,
    ablate,
    format_table,
    load_ablate_config,
)
from jobs.config import AnnotatedConfig, PipelineConfig
from jobs.stage import Stage
from training.testing import SAMPLE_TEXT

GERMAN = (
    "und der die das ist nicht mit einem für auf werden bei sich auch nach Straße Gemeinde "
    "Stadt Jahr Menschen Arbeit Zeit heute wieder schon immer zwischen unter gegen während"
).split()


def german(rng: random.Random, *, with_english_stop_words: bool) -> str:
    """12 sentences of German words, 3 to a line; a few English stop words among them if asked."""
    words = GERMAN + (["the", "and", "to", "of"] if with_english_stop_words else [])
    sentences = [" ".join(rng.choice(words) for _ in range(15)).capitalize() + "." for _ in range(12)]
    return "\n".join(" ".join(sentences[j : j + 3]) for j in range(0, 12, 3))


def annotate(row: dict) -> dict:
    """`row` with the signals and first failing rule of the default annotated steps (language ID
    left out: `lang` is given), as the annotated stage stores them."""
    from jobs.annotated import make_annotator

    steps = make_annotator(AnnotatedConfig(), lid_model="").steps
    signals, reject = {}, None
    for step in steps:
        values = step.filter.signals(row)
        signals.update(values)
        reject = reject or step.filter.decide(values)
    return {**row, "signals": signals, "reject": reject}


def write_stage(run, name, rows, **manifest):
    stage = Stage(str(run), name, "test-config", "test-input")
    stage.prepare()
    part = stage.write_part(0, [dict(r) for r in rows], counts={})
    stage.commit([part], rows_in=len(rows), started=0.0, **manifest)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run of 60 documents on 20 sites: English prose (the quality classifier's positives),
    kept; pages of German words, rejected by the language rule; two short English ones, by
    Gopher's word count. The reference set is the bundled Shakespeare text (`tiny_config`)."""
    rng = random.Random(0)
    run = tmp_path_factory.mktemp("abl_run")
    prose = (doc.text[:3000] for doc in read_docs([REFERENCE_SAMPLE]))
    english = list(
        islice(
            (t for t in prose if annotate({"text": t, "lang": "en", "lang_score": 0.99})["reject"] is None),
            40,
        )
    )
    rows = []
    for i in range(60):
        if i < 40:
            text, lang = english[i], "en"
        else:
            text, lang = german(rng, with_english_stop_words=i % 2 == 1), "de"
        if i in (5, 6):
            text = "Too short to keep. " * 3
        domain = f"site{i % 20}.example.org"
        rows.append(
            annotate(
                {
                    "id": f"d{i:03d}",
                    "url": f"https://{domain}/{i}",
                    "domain": domain,
                    "text": text,
                    "lang": lang,
                    "lang_score": 0.99,
                }
            )
        )
    write_stage(run, "documents", [{**r, "signals": None, "reject": None} for r in rows])
    write_stage(run, "annotated", rows, quality={"threshold": None})
    write_json_atomic(run / "run.json", {"config": PipelineConfig().model_dump(mode="json")})
    return run


# A proxy of seconds, its tokenizer and evaluation sized for the small runs of these tests; also
# tests/test_mixture.py's (jobs/ablate.py ProxyConfig).
TINY_PROXY = {
    "vocab_size": 300,
    "tokenizer_sample_bytes": 20_000,
    "heldout_fraction": 0.2,
    "eval_windows": 16,
    "train": {
        "steps": 4,
        "global_batch": 4,
        "micro_batch": 4,
        "dtype": "float32",
        "threads": 1,
        "eval_every": 0,
        "save_every": 0,
        "eval_windows": 8,
        "model": {"context_length": 32, "n_layer": 1, "n_head": 2, "d_model": 32},
        "optim": {"warmup_steps": 1},
    },
}


def tiny_config(**overrides) -> AblateConfig:
    cfg = {
        "variants": {"documents": {"stage": "documents"}, "annotated": {"stage": "annotated"}},
        "seeds": [0],
        "reference_files": [str(SAMPLE_TEXT)],
        **TINY_PROXY,
    }
    return AblateConfig.model_validate({**cfg, **overrides})


def test_shipped_config_lists_every_option_with_the_code_defaults():
    assert load_ablate_config(DEFAULT_CONFIG).model_dump(mode="json") == AblateConfig().model_dump(
        mode="json"
    )


def test_small_ablation_trains_each_variant_on_the_same_budget(run, tmp_path):
    cfg = tiny_config()
    report = ablate(cfg, run, tmp_path)
    assert report["budget_tokens"] == 4 * 4 * 32
    for name in ("documents", "annotated"):
        stats = report["variants"][name]
        assert stats["epochs"] == round(report["budget_tokens"] / stats["tokens"], 3)
        bpb = report["summary"][name]["bpb"]
        assert set(bpb) == {"reference", "crawl", "crawl_kept"}
        assert all(0 < b["mean"] < 16 and b["n"] == 1 for b in bpb.values())
    assert report["variants"]["documents"]["tokens"] > report["variants"]["annotated"]["tokens"]
    assert (tmp_path / "ablation.png").stat().st_size > 0
    assert json.loads((tmp_path / "ablation.json").read_text())["summary"] == report["summary"]
    table = format_table(report)
    assert "documents" in table and "annotated" in table and "±" in table


def test_rerun_and_identical_variants_reuse_results(run, tmp_path, monkeypatch):
    import jobs.ablate as module

    variants = {"annotated": {"stage": "annotated"}, "again": {"stage": "annotated"}}
    cfg = tiny_config(variants=variants)
    calls = []
    real = module.train_and_evaluate
    monkeypatch.setattr(module, "train_and_evaluate", lambda job: calls.append(job["variant"]) or real(job))
    first = ablate(cfg, run, tmp_path)
    assert calls == ["annotated"]  # `again` has the same shards, seed and config: trained once
    assert first["summary"]["again"] == first["summary"]["annotated"]
    second = ablate(cfg, run, tmp_path)
    assert calls == ["annotated"] and second["summary"] == first["summary"]


def test_heldout_sites_are_in_no_variant_and_make_the_crawl_sets(run):
    heldout = data.heldout_rule(0, 0.2)
    sites = {f"site{i}.example.org" for i in range(20)}
    held = {s for s in sites if heldout({"domain": s, "id": ""})}
    assert 0 < len(held) < len(sites)
    for stage in ("documents", "annotated"):
        docs = data.variant_docs(run, stage, (), heldout)
        assert docs and all(int(d.id[1:]) % 20 not in {int(s[4:].split(".")[0]) for s in held} for d in docs)
    sets = data.eval_sets(run, (str(SAMPLE_TEXT),), "annotated", heldout)
    assert len(sets["crawl"]) == 3 * len(held) and 0 < len(sets["crawl_kept"]) < len(sets["crawl"])


def test_without_lang_readds_only_documents_that_pass_the_other_rules(run):
    everyone = data.heldout_rule(0, 1e-9)  # nothing held out
    kept = {d.id for d in data.variant_docs(run, "annotated", (), everyone)}
    no_lang = {d.id for d in data.variant_docs(run, "annotated", ("lang",), everyone)}
    # German pages holding English stop words pass every other rule; the others still fail
    # gopher_quality:too_few_stop_words, as the short English pages fail its word count.
    german = {f"d{i:03d}" for i in range(41, 60, 2)}
    assert kept == {f"d{i:03d}" for i in range(40)} - {"d005", "d006"}
    assert no_lang == kept | german


def test_without_is_checked_against_the_rules_and_the_stage():
    with pytest.raises(ValueError, match="unknown"):
        VariantConfig(stage="annotated", without=("language",))
    with pytest.raises(ValueError, match="only with stage annotated"):
        VariantConfig(stage="mixed", without=("lang",))


def test_a_variant_reads_its_stage_from_another_run_relative_to_the_given_one(tmp_path, monkeypatch):
    import jobs.ablate as module

    read = []

    def fake_docs(run, stage, without, heldout):
        read.append((run.resolve(), stage))
        return []

    class Stop(Exception):
        pass

    monkeypatch.setattr(module.data, "variant_docs", fake_docs)
    monkeypatch.setattr(module.data, "eval_sets", lambda run, *a: (_ for _ in ()).throw(Stop(run)))
    variants = {"here": {"stage": "deduped"}, "there": {"stage": "deduped", "run": "../other"}}
    with pytest.raises(Stop) as stop:
        module.prepare(tiny_config(variants=variants), tmp_path / "base", tmp_path / "out")
    assert read == [(tmp_path / "base", "deduped"), (tmp_path / "other", "deduped")]
    assert stop.value.args[0] == tmp_path / "base"  # the evaluation sets: the given run's

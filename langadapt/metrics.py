"""Offline, Persian-safe metrics for prediction files: label accuracy/macro-F1, ROUGE, chrF, BLEU.

Classification (entailment, sentiment, multiple choice). Real test sets mix spellings of one label inside a file
(``0``/``"0"``/``"۰"``, ``Positive``/``positive``/``مثبت``, ``b``/``B``/``Option B``/``(B)``/``گزینه ب``), so gold and
predicted labels are first mapped to a canonical key (:func:`canonical_label`). The label set of a file is the set of
its gold keys; a free-form response is mapped to the first label it mentions (:func:`extract_label`), and a response
that mentions none is *unparsed* (wrong, and counted apart). Accuracy and macro-F1 (over the gold label set) come
from scikit-learn.

Generation (summary, translation). ``rouge_score``'s default tokenizer keeps only ``[a-z0-9]``, so it deletes Persian
text and scores identical Persian strings 0; we pass :class:`UnicodeTokenizer` instead. chrF and BLEU are sacrebleu's
corpus scores; BLEU uses only the tokenizers that run offline: ``13a`` for Latin-script references, ``intl``
(Unicode punctuation and symbols split) otherwise (``flores*``/``spm`` download a model). Gold and predicted text are
normalized with the Persian normalizer first, so Arabic vs Persian yeh/kaf or stray bidi marks cost nothing.

All scores are on a 0-100 scale; ``unparsed_count`` and ``errors`` are counts.
"""

from __future__ import annotations

import re
from functools import lru_cache
from collections.abc import Sequence
from typing import Any

from langadapt.evaldata import CLASSIFICATION_TASKS
from langadapt.normalize import normalize

UNPARSED = "<unparsed>"
BLEU_TOKENIZERS = ("13a", "intl", "char")

_TO_ASCII_DIGITS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "0123456789" * 2)
# Spellings of common label words (lower-cased, normalized) -> canonical key. Persian option letters follow the
# abjad order used in Persian exams: الف، ب، ج، د.
SYNONYMS: dict[str, str] = {
    "pos": "positive", "مثبت": "positive",
    "neg": "negative", "منفی": "negative",
    "خنثی": "neutral", "بی‌طرف": "neutral", "بیطرف": "neutral",
    "entails": "entailment", "entailed": "entailment", "استلزام": "entailment",
    "contradicts": "contradiction", "contradictory": "contradiction", "تناقض": "contradiction",
    "متناقض": "contradiction", "تضاد": "contradiction",
    "بله": "yes", "آری": "yes", "بلی": "yes", "خیر": "no", "نه": "no",
    "درست": "true", "صحیح": "true", "نادرست": "false", "غلط": "false",
    "الف": "a", "ب": "b", "ج": "c", "د": "d",
}
# Spellings that are ordinary words in running text: they count only when they are the whole response.
_EXACT_ONLY = {"pos", "neg", "نه"}
_EDGE_PUNCT = " \t\r\n.,;:!?؟،؛\"'`*()[]{}<>«»"
_PREFIX = re.compile(r"^(?:the\s+)?(?:correct\s+)?(?:option|choice|answer|label|گزینه(?:ٔ|ی)?|پاسخ|جواب|برچسب)"
                     r"(?:\s+is)?\s*[:\-]?\s*")
_SEP = re.compile(r"[\s_\-]+")
_LATIN_LETTER = re.compile(r"[a-z]")


def _clean(text: str) -> str:
    return normalize(text).translate(_TO_ASCII_DIGITS)


def canonical_label(raw: Any) -> str | None:
    """The canonical key of a label spelling (``"(B)"`` -> ``"b"``, ``"۲"`` -> ``"2"``, ``"مثبت"`` -> ``"positive"``).

    None for an empty value.
    """
    if raw is None or isinstance(raw, bool):
        return None if raw is None else str(raw).lower()
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    t = _clean(str(raw)).casefold().strip(_EDGE_PUNCT)
    t = _PREFIX.sub("", t).strip(_EDGE_PUNCT)
    if re.fullmatch(r"\d+\.0+", t):
        t = t.split(".")[0]
    t = _SEP.sub("_", t)
    return SYNONYMS.get(t, t) or None


@lru_cache(maxsize=4096)
def _surface_patterns(label: str) -> tuple[re.Pattern, ...]:
    """Regexes that find a mention of ``label`` in free text (already normalized, ASCII digits)."""
    forms = {label} | {s for s, c in SYNONYMS.items() if c == label and s not in _EXACT_ONLY}
    pats = []
    for s in forms:
        if _LATIN_LETTER.fullmatch(s):
            # A lone lower-case "a" is an article, so a Latin option letter counts bare only in upper case, and in
            # any case inside "(b)", "b)" or after "option"/"answer".
            pats.append(re.compile(rf"(?<![\w]){s.upper()}(?![\w])"))
            pats.append(re.compile(rf"\({s}\)|(?<![\w]){s}\)|(?:option|choice|answer(?:\s+is)?)\s*:?\s*{s}(?![\w])",
                                   re.IGNORECASE))
        else:
            body = r"[\s_\-]+".join(re.escape(p) for p in s.split("_"))
            pats.append(re.compile(rf"(?<![\w\u200c]){body}(?![\w\u200c])", re.IGNORECASE))
    return tuple(pats)


def extract_label(text: str | None, labels: Sequence[str]) -> str | None:
    """The first label of ``labels`` (canonical keys) that a free-form response states, or None.

    The whole response is tried first (``"Option B"``); otherwise the earliest mention in the text wins (the
    longest one when two start at the same place, so ``not entailment`` beats ``entailment``).
    """
    if text is None:
        return None
    whole = canonical_label(text)
    if whole in labels:
        return whole
    t = _clean(text)
    best: tuple[int, int, str] | None = None
    for label in labels:
        for pat in _surface_patterns(label):
            m = pat.search(t)
            if m and (best is None or (m.start(), -len(m.group())) < best[:2]):
                best = (m.start(), -len(m.group()), label)
    return best[2] if best else None


def classification_scores(golds: Sequence[Any], predictions: Sequence[str | None]) -> dict[str, Any]:
    """``accuracy``, ``macro_f1``, ``unparsed`` (0-100) and ``unparsed_count`` for one file."""
    from sklearn.metrics import accuracy_score, f1_score

    y_true = [canonical_label(g) for g in golds]
    labels = sorted({y for y in y_true if y is not None})
    y_pred = [extract_label(p, labels) or UNPARSED for p in predictions]
    unparsed = sum(p == UNPARSED for p in y_pred)
    return {
        "accuracy": 100.0 * accuracy_score(y_true, y_pred),
        "macro_f1": 100.0 * f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
        "unparsed": 100.0 * unparsed / max(len(y_pred), 1),
        "unparsed_count": unparsed,
    }


class UnicodeTokenizer:
    """Word tokenizer for ``rouge_score`` that keeps every script: lower-cased runs of letters, digits, combining
    marks and ZWNJ (a Persian word like ``می‌روم`` stays one token)."""

    _WORD = re.compile(r"[\w\u200c\u0300-\u036f\u064b-\u065f\u0670\u06d6-\u06ed]+")

    def tokenize(self, text: str) -> list[str]:
        return [w.strip("\u200c") for w in self._WORD.findall(_clean(text).casefold()) if w.strip("\u200c")]


def bleu_tokenizer(references: Sequence[str]) -> str:
    """``13a`` when the references are mostly Latin script, else ``intl``."""
    letters = [c for r in references for c in r if c.isalpha()]
    latin = sum(c.isascii() for c in letters)
    return "13a" if letters and latin >= 0.5 * len(letters) else "intl"


def generation_scores(golds: Sequence[str], predictions: Sequence[str | None],
                      bleu_tokenize: str | None = None) -> dict[str, float]:
    """``rouge1``, ``rouge2``, ``rougeL`` (mean F1), ``chrf`` and ``bleu`` (corpus), all 0-100."""
    import sacrebleu
    from rouge_score import rouge_scorer

    refs = [normalize(str(g)) for g in golds]
    hyps = [normalize(p or "") for p in predictions]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=UnicodeTokenizer())
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for ref, hyp in zip(refs, hyps):
        for k, s in scorer.score(ref, hyp).items():
            totals[k] += s.fmeasure
    n = max(len(refs), 1)
    out = {k: 100.0 * v / n for k, v in totals.items()}
    out["chrf"] = sacrebleu.corpus_chrf(hyps, [refs]).score
    out["bleu"] = sacrebleu.corpus_bleu(hyps, [refs], tokenize=bleu_tokenize or bleu_tokenizer(refs)).score
    return out


def score_records(task: str, records: Sequence[dict[str, Any]], bleu_tokenize: str | None = None) -> dict[str, Any]:
    """Scores of one prediction file: ``{"task", "n", "errors", ...metrics}``. Failed examples count as wrong.

    ``records`` use the current field names ``prediction`` and ``gold`` (see
    :func:`langadapt.evaldata.read_predictions`, which renames those of old files).
    """
    golds = [r["gold"] for r in records]
    preds = [None if "error" in r else r["prediction"] for r in records]
    result: dict[str, Any] = {"task": task, "n": len(records), "errors": sum("error" in r for r in records)}
    if task in CLASSIFICATION_TASKS:
        result.update(classification_scores(golds, preds))
    else:
        result.update(generation_scores([str(g) for g in golds], preds, bleu_tokenize))
    return result

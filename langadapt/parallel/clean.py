"""Cleaning pairs: whitespace collapsed, the Persian side normalized, then filters in a fixed order, each pair dropped
by the first one it fails, so the counts add up."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from langadapt.errors import InputError
from langadapt.normalize import NormalizerConfig, normalize
from langadapt.parallel.pairs import Pair
from langadapt.scripts import has_arabic_letter


@dataclass(frozen=True)
class FilterConfig:
    """Thresholds of the pair filters, in characters after normalization."""

    max_chars: int = 1000  # per side; longer "pairs" are usually whole pages that happen to be aligned
    max_length_ratio: float = 3.0  # longer side / shorter side; Persian runs ~0.8-1.3x English in characters
    ratio_min_chars: int = 20  # apply the ratio only when the longer side has this many characters ("OK"/"باشه")
    require_persian_script: bool = True  # the fa side must contain an Arabic-script letter (not an English copy)


# Each filter: (name, flag to loosen, description). Applied in this order; a pair is counted under the first it fails.
FILTERS = (
    ("empty", "(fix the input)", "one side is empty after normalization"),
    ("no_persian_script", "--require_persian_script false", "the Persian side has no Arabic-script letter"),
    ("too_long", "--max_chars", "a side is longer than --max_chars characters"),
    ("length_ratio", "--max_length_ratio", "the longer side is more than --max_length_ratio times the shorter"),
    ("duplicate", "(none)", "the same pair (ignoring case and spacing) appeared earlier"),
)


def _clean_side(text: str, cfg: NormalizerConfig | None) -> str:
    """Collapse all whitespace (newlines too: a document line holds one side) and normalize when ``cfg``."""
    text = " ".join(text.split())
    return normalize(text, cfg).strip() if cfg is not None else text


def _failed_filter(p: Pair, fcfg: FilterConfig, seen: set) -> str | None:
    if not p.en or not p.fa:
        return "empty"
    if fcfg.require_persian_script and not has_arabic_letter(p.fa):
        return "no_persian_script"
    if max(len(p.en), len(p.fa)) > fcfg.max_chars:
        return "too_long"
    longer, shorter = max(len(p.en), len(p.fa)), min(len(p.en), len(p.fa))
    if longer >= fcfg.ratio_min_chars and longer > fcfg.max_length_ratio * shorter:
        return "length_ratio"
    key = (p.en.casefold(), p.fa)
    if key in seen:
        return "duplicate"
    seen.add(key)
    return None


def clean_pairs(pairs: Iterable[Pair], fcfg: FilterConfig, norm: NormalizerConfig | None,
                examples_per_reason: int = 3) -> tuple[list[Pair], dict]:
    """Normalize and filter pairs. Returns the kept pairs and a report ``{"read", "kept", "dropped": {reason: n},
    "by_source": {source: {"read", "kept", reason: n}}, "examples": {reason: [origin, ...]}}``.

    Raises :class:`InputError` when no pair is left, naming the filter that removed the last ones.
    """
    kept: list[Pair] = []
    dropped: Counter = Counter()
    by_source: dict[str, Counter] = {}
    examples: dict[str, list[str]] = {}
    seen: set = set()
    n = 0
    for p in pairs:
        n += 1
        # English is only whitespace-cleaned: the Persian normalizer's rules (letters, ZWNJ) are for Persian.
        p = dataclasses.replace(p, en=_clean_side(p.en, None), fa=_clean_side(p.fa, norm))
        src = by_source.setdefault(p.source, Counter())
        src["read"] += 1
        reason = _failed_filter(p, fcfg, seen)
        if reason is None:
            kept.append(p)
            src["kept"] += 1
        else:
            dropped[reason] += 1
            src[reason] += 1
            ex = examples.setdefault(reason, [])
            if len(ex) < examples_per_reason:
                ex.append(p.origin)
    if n == 0:
        raise InputError("the inputs hold no translated pairs (see the skipped fuzzy/untranslated .po entries); "
                         "give other --input files or --source")
    if not kept:
        culprit = [f for f in FILTERS if dropped[f[0]]][-1]
        raise InputError(f"no pairs left after filtering: {n} read, and filter {culprit[0]!r} ({culprit[2]}) removed "
                         f"the last {dropped[culprit[0]]}; loosen {culprit[1]} or check the input "
                         f"(dropped: {dict(dropped)})")
    report = {"read": n, "kept": len(kept), "dropped": {f[0]: dropped[f[0]] for f in FILTERS},
              "by_source": {k: dict(v) for k, v in by_source.items()}, "examples": examples}
    return kept, report

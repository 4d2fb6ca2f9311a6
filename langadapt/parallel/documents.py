"""Bilingual pretraining documents from pairs, in the layouts ``en_fa``, ``fa_en`` and ``interleaved`` (sentence by
sentence) in the exact proportions asked."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence

from langadapt.parallel.pairs import Pair
from langadapt.parallel.ratios import allocate

LAYOUTS = ("en_fa", "fa_en", "interleaved")

_SENTENCE_END = re.compile(r"(?<=[.!?؟;؛])\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences of one side: split after ``. ! ? ؟ ; ؛`` followed by a space."""
    return [s for s in _SENTENCE_END.split(text) if s]


def layout_document(pair: Pair, layout: str) -> tuple[str, str]:
    """The text of one pretraining document and the layout actually used.

    ``interleaved`` alternates English and Persian sentence by sentence; when the two sides have different
    sentence counts there is no safe alignment and the pair falls back to ``en_fa`` (reported as such).
    """
    if layout == "en_fa":
        return f"{pair.en}\n{pair.fa}", layout
    if layout == "fa_en":
        return f"{pair.fa}\n{pair.en}", layout
    en, fa = split_sentences(pair.en), split_sentences(pair.fa)
    if len(en) != len(fa):
        return f"{pair.en}\n{pair.fa}", "en_fa"
    return "\n".join(s for e, f in zip(en, fa) for s in (e, f)), "interleaved"


def pretraining_documents(pairs: Sequence[Pair], ratios: dict[str, float], seed: int) -> tuple[list[dict], dict]:
    """One ``{"text", "layout"}`` document per pair, layouts in the proportions ``ratios``; plus their counts
    ``{"requested": {layout: n}, "written": {layout: n}}`` (they differ by the interleaving fallbacks)."""
    rng = random.Random(seed)
    labels = allocate(len(pairs), ratios, rng)
    docs = []
    for pair, layout in zip(pairs, labels):
        text, used = layout_document(pair, layout)
        docs.append({"text": text, "layout": used})
    rng.shuffle(docs)
    return docs, {"requested": dict(Counter(labels)), "written": dict(Counter(d["layout"] for d in docs))}

"""Bits per byte: the held-out loss of a language model in a unit that does not depend on its tokenizer.

The total negative log-likelihood of a text is the same quantity however the text was cut into tokens (it is the
log-probability the model gives the whole string), so dividing it by the UTF-8 bytes of the text gives a number that
compares a model reading Persian one byte-level piece at a time with the same model after its vocabulary grew::

    bpb = total NLL (nats) / ln(2) / UTF-8 bytes of the text

Bytes rather than characters or words, because they need no definition of a word (ZWNJ, punctuation) and are what
byte-level tokenizers start from; a Persian letter is 2 bytes, an ASCII letter 1. ``ppl_char`` and ``ppl_word``
(:mod:`langadapt.perplexity`) remain for readers used to them: ``bpb = ln(ppl_char) * chars / (bytes * ln 2)``.

:func:`langadapt.perplexity.corpus_perplexity` counts the bytes of the (normalized) documents it scores and reports
``bpb`` next to the perplexities; :mod:`langadapt.bpb_curve` scores held-out files during training.
"""

from __future__ import annotations

import math

LN2 = math.log(2.0)


def utf8_bytes(text: str) -> int:
    """Bytes of ``text`` in UTF-8 (the denominator of bits per byte)."""
    return len(text.encode("utf-8"))


def bits_per_byte(nll_nats: float, n_bytes: int) -> float:
    """``nll_nats / ln 2 / n_bytes``: bits the model needs per byte of text; ``nan`` for an empty text."""
    return nll_nats / LN2 / n_bytes if n_bytes > 0 else float("nan")


# Written into a training run's output folder by langadapt.bpb_curve; read back by the study.
CURVE_FILE = "bpb_curve.jsonl"


def read_documents(path: str, max_words: int) -> list[str]:
    """The first documents of a held-out file, up to ``max_words`` words (at least one document)."""
    from langadapt.io import iter_corpus

    docs, words = [], 0
    for doc in iter_corpus([path]):
        if docs and words >= max_words:
            break
        docs.append(doc)
        words += len(doc.split())
    return docs


def read_curve(path: str) -> list[dict]:
    """Records of a ``bpb_curve.jsonl``, one per (step, file), the last written winning (a resumed run repeats)."""
    import json

    out: dict[tuple[int, str], dict] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                out[(rec["step"], rec["file"])] = rec
    return [out[k] for k in sorted(out)]

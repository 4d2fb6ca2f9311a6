"""Bits per byte: the held-out loss of a language model in a unit that does not depend on its tokenizer.

The total negative log-likelihood of a text is the same quantity however the text was cut into tokens (it is the
log-probability the model gives the whole string), so dividing it by the UTF-8 bytes of the text gives a number that
compares a model reading Persian one byte-level piece at a time with the same model after its vocabulary grew::

    bpb = total NLL (nats) / ln(2) / UTF-8 bytes of the text

Bytes rather than characters or words, because they need no definition of a word (ZWNJ, punctuation) and are what
byte-level tokenizers start from; a Persian letter is 2 bytes, an ASCII letter 1. ``ppl_char`` and ``ppl_word``
(:mod:`langadapt.perplexity`) remain for readers used to them: ``bpb = ln(ppl_char) * chars / (bytes * ln 2)``.

:func:`langadapt.perplexity.corpus_perplexity` counts the bytes of the (normalized) documents it scores and reports
``bpb`` next to the perplexities.
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


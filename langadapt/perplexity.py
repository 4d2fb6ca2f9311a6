"""Held-out perplexity that is comparable across tokenizers: per word and per character.

Per-token perplexity cannot compare a model that reads Persian one byte-level piece per character with the same
model after its vocabulary was extended: the second predicts fewer, harder tokens. The total negative
log-likelihood of a text does not depend on how it was cut, so we divide it by a unit the tokenizers share::

    ppl_word = exp(total NLL / number of words)       # words: whitespace-separated, after normalization
    ppl_char = exp(total NLL / number of characters)  # characters of the normalized text

(``ppl_token`` is reported as well, for reference within one tokenizer.) ``bpb``, bits per UTF-8 byte of the same
text, is the tokenizer-independent number the adaptation study compares (:mod:`langadapt.bpb`).

Every document is scored on its own and every one of its tokens is predicted exactly once: the document is
preceded by the tokenizer's own start token when it adds one (Llama-2's ``<s>``), otherwise by the EOS token, the
separator a packed pretraining stream puts before each document. Documents longer than ``block_size`` are scored
in consecutive windows (no overlap), each window predicting its own tokens from the window's earlier ones.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from langadapt.bpb import bits_per_byte, utf8_bytes
from langadapt.normalize import NormalizerConfig, normalize

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclass
class PerplexityResult:
    """Totals over a corpus and the perplexities derived from them."""

    documents: int
    tokens: int  # predicted tokens (the start token is context, not a target)
    words: int
    chars: int
    nll: float  # total negative log-likelihood in nats
    bytes: int = 0  # UTF-8 bytes of the normalized documents (the unit of bits per byte)

    @property
    def ppl_token(self) -> float:
        return _safe_exp(self.nll / self.tokens) if self.tokens else float("nan")

    @property
    def ppl_word(self) -> float:
        return _safe_exp(self.nll / self.words) if self.words else float("nan")

    @property
    def ppl_char(self) -> float:
        return _safe_exp(self.nll / self.chars) if self.chars else float("nan")

    @property
    def bpb(self) -> float:
        return bits_per_byte(self.nll, self.bytes)

    @property
    def tokens_per_word(self) -> float:
        return self.tokens / self.words if self.words else float("nan")

    def to_dict(self) -> dict:
        return {**asdict(self), "ppl_token": self.ppl_token, "ppl_word": self.ppl_word, "ppl_char": self.ppl_char,
                "bpb": self.bpb, "tokens_per_word": self.tokens_per_word}


def _safe_exp(x: float) -> float:
    return math.exp(x) if x < 700 else float("inf")


def count_words(text: str) -> int:
    """Whitespace-separated words (a ZWNJ joins the parts of one Persian word, so it does not split)."""
    return len(text.split())


def document_ids(tokenizer, text: str) -> list[int]:
    """Token ids of one document, starting with the context token that is not scored (see module docs)."""
    ids = tokenizer(text)["input_ids"]
    start = tokenizer.bos_token_id
    if ids and start is not None and ids[0] == start:
        return ids  # the tokenizer adds its own start token (SentencePiece/Llama-2 style)
    sep = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else start
    if sep is None:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token to start a document with")
    return [sep] + tokenizer(text, add_special_tokens=False)["input_ids"]


def windows(ids: Sequence[int], block_size: int) -> list[tuple[list[int], list[int]]]:
    """``(inputs, targets)`` windows of at most ``block_size`` inputs covering targets ``ids[1:]`` exactly once."""
    out = []
    for start in range(0, len(ids) - 1, block_size):
        chunk = list(ids[start:start + block_size + 1])
        out.append((chunk[:-1], chunk[1:]))
    return out


@torch.no_grad()
def score_windows(model, items: list[tuple[list[int], list[int]]], pad_id: int, batch_tokens: int) -> float:
    """Total NLL (nats) of the targets of ``items``, batched by about ``batch_tokens`` padded tokens."""
    device = next(model.parameters()).device
    # Shortest first, so each batch holds windows of similar length and little padding.
    order = sorted(range(len(items)), key=lambda i: len(items[i][0]))
    total = 0.0
    i = 0
    while i < len(order):
        j = i + 1  # a batch holds at least one window, however long
        while j < len(order) and (j - i + 1) * len(items[order[j]][0]) <= batch_tokens:
            j += 1
        batch = [items[k] for k in order[i:j]]
        width = max(len(x) for x, _ in batch)
        inputs = torch.full((len(batch), width), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, (x, y) in enumerate(batch):
            inputs[r, : len(x)] = torch.tensor(x)
            labels[r, : len(y)] = torch.tensor(y)
            mask[r, : len(x)] = 1
        logits = model(input_ids=inputs.to(device), attention_mask=mask.to(device)).logits.float()
        total += F.cross_entropy(
            logits.view(-1, logits.shape[-1]), labels.to(device).view(-1), ignore_index=IGNORE_INDEX, reduction="sum"
        ).item()
        i = j
    return total


def corpus_perplexity(
    model,
    tokenizer,
    documents: Sequence[str],
    block_size: int = 512,
    batch_tokens: int = 2048,
    normalizer: NormalizerConfig | None = None,
) -> PerplexityResult:
    """Perplexity of ``model`` on ``documents`` (per token, word and character; see the module docstring).

    ``normalizer``: applied to every document before counting and tokenizing (the tokenizer folder's config);
    ``None`` leaves the text as it is.
    """
    if block_size < 1:
        raise ValueError(f"--block_size must be >= 1, got {block_size}")
    items, words, chars, n_bytes, tokens, docs = [], 0, 0, 0, 0, 0
    for text in documents:
        text = normalize(text, normalizer) if normalizer is not None else text
        if not text.strip():
            continue
        ids = document_ids(tokenizer, text)
        docs += 1
        words += count_words(text)
        chars += len(text)
        n_bytes += utf8_bytes(text)
        tokens += len(ids) - 1
        items.extend(windows(ids, block_size))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    was_training = model.training
    model.eval()
    try:
        nll = score_windows(model, items, pad_id if pad_id is not None else 0, batch_tokens)
    finally:
        model.train(was_training)
    result = PerplexityResult(documents=docs, tokens=tokens, words=words, chars=chars, nll=nll, bytes=n_bytes)
    logger.info("%d documents, %d words, %d tokens: ppl/word %.2f, ppl/char %.3f, ppl/token %.2f, bits/byte %.4f",
                docs, words, tokens, result.ppl_word, result.ppl_char, result.ppl_token, result.bpb)
    return result

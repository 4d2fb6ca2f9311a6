"""Growing a model's embedding table to a merged tokenizer and initialising the new rows.

Why explicit: transformers 5's ``resize_token_embeddings`` already fills new rows (``mean_resizing=True`` samples
them from a normal distribution with the old rows' mean and covariance; ``False`` draws N(0, initializer_range)).
Either way the new Persian tokens start with no relation to what they mean. ``subtoken_mean`` starts each new token
at the mean of the base rows of the pieces the *base* tokenizer splits it into, so before any training the model
already reads the new token roughly as it read the pieces (Gee et al. 2022, "Fast vocabulary transfer"; the seed
paper's recipe). ``subtoken_weighted`` (the default) weighs the same pieces 1, 1/2, 1/4, ... from the first
(:func:`piece_weights` says why and what it measured: half the plain mean's step-0 gap to the base tokenizer, and
at least as good after training in the adaptation study). We resize with ``mean_resizing=False`` and then
overwrite every added row ourselves, so the init is whatever :class:`ResizeReport` says it is, and that report goes
into ``run_args.json``.

Rows are handled separately for the input embeddings and an *untied* output head (their base rows differ); with
tied embeddings there is one tensor, initialised once, and it stays tied.

Row ranges, for a table of ``R`` rows before and ``R'`` after (``R' = round_up(len(tokenizer), multiple)`` when the
tokenizer outgrows the table, otherwise ``R' = R``; tables never shrink):

* ``[0, first_new_id)``: base rows, copied unchanged.
* ``[first_new_id, len(tokenizer))``: the new tokens, initialised with ``--embedding_init``.
* ``[len(tokenizer), R')``: padding rows no input ever uses; they get the mean base row (so their output logit is
  an average one), or normal noise for ``random``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

logger = logging.getLogger(__name__)

# Fixed seed for the ``random`` init, so the same base model + tokenizer give the same rows in every process
# (ranks of a distributed run, and a later reload of a new_rows adapter onto a freshly resized base).
RANDOM_INIT_SEED = 1234


def padded_size(n: int, multiple: int) -> int:
    """``n`` rounded up to a multiple of ``multiple`` (``multiple`` 1 = unchanged)."""
    return ((n + multiple - 1) // multiple) * multiple


@dataclass
class ResizeReport:
    """What :func:`resize_and_init` did; recorded in ``run_args.json`` under ``resolved.embeddings``."""

    base_rows: int
    tokenizer_size: int
    embedding_rows: int
    first_new_id: int
    init: str
    tied: bool
    padding_rows: int = 0
    # New tokens the base tokenizer could not split into known pieces; they fell back to the mean base row.
    subtoken_fallbacks: list[str] = field(default_factory=list)
    # A few examples ``{"token": ..., "pieces": [...]}`` for the log and run_args.json.
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def new_token_ids(self) -> list[int]:
        """Ids of the tokens whose rows were initialised here (empty when the vocabulary did not grow)."""
        return list(range(self.first_new_id, self.tokenizer_size))

    @property
    def vocab_grew(self) -> bool:
        return self.tokenizer_size > self.first_new_id or self.embedding_rows > self.base_rows

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["num_new_tokens"] = len(self.new_token_ids)
        d["transformers_mean_resizing"] = self.init == "hf_default"
        return d


@contextlib.contextmanager
def gathered(params: Sequence[torch.nn.Parameter], modify: bool) -> Iterator[None]:
    """Under DeepSpeed ZeRO-3 gather partitioned parameters so every rank sees (and rank 0 writes) whole tensors."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    if is_deepspeed_zero3_enabled():
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(params), modifier_rank=0 if modify else None):
            yield
    else:
        yield


def subtoken_pieces(
    token_ids: Sequence[int], tokenizer, base_tokenizer, max_base_id: int
) -> dict[int, list[int]]:
    """For each new token id, the base-tokenizer ids of its pieces (all ``< max_base_id``); ``[]`` when none.

    A vocabulary entry's string is already in the tokenizer's model alphabet (byte-level ``Ġ``-form for byte-level
    BPE, ``▁``-form for SentencePiece), so the base tokenizer's backend model splits it directly, without
    normalizer or pre-tokenizer: ``base_tokenizer.backend_tokenizer.model.tokenize(token_str)``. Tokens added with
    ``add_tokens`` (and anything the model cannot split) are plain text and go through the base tokenizer's whole
    pipeline without special tokens.
    """
    added = {i: t.content for i, t in tokenizer.added_tokens_decoder.items()}
    backend_model = getattr(getattr(base_tokenizer, "backend_tokenizer", None), "model", None)
    unk = base_tokenizer.unk_token_id
    out: dict[int, list[int]] = {}
    for i in token_ids:
        pieces: list[int] = []
        if i not in added and backend_model is not None:
            token_str = tokenizer.convert_ids_to_tokens(i)
            pieces = [t.id for t in backend_model.tokenize(token_str)] if token_str else []
        if not pieces or any(p is None or p == unk for p in pieces):
            text = added.get(i)
            if text is None:
                text = tokenizer.convert_tokens_to_string([tokenizer.convert_ids_to_tokens(i)])
            pieces = base_tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
        out[i] = [p for p in pieces if p is not None and 0 <= p < max_base_id and p != unk]
    return out


# Inits that build a new row from the base rows of its pieces, and the weight ratio between consecutive pieces
# (1.0: the plain mean; 0.5: weights 1, 1/2, 1/4, ... from the first piece).
SUBTOKEN_DECAY: dict[str, float] = {"subtoken_mean": 1.0, "subtoken_weighted": 0.5}


def piece_weights(n: int, decay: float) -> torch.Tensor:
    """Weights ``decay**0, decay**1, ...`` of ``n`` pieces, normalised to sum to 1 (first piece heaviest for
    ``decay < 1``).

    Why the first piece: a byte-level or SentencePiece split starts with the piece that carries the word's start
    (its space marker and first letters), and the later pieces are predicted from it, so they say less about the
    word as a whole. Measured at step 0 on SmolLM2-135M (tied) with the demo's merged tokenizer, first 40 held-out
    Persian documents (bench/embedding_init.py): base tokenizer 2.105 bits/byte; ``decay`` 0.5 2.227 (+5.8%), 0.25
    +6.8%, 0.7 +8.6%, 1.0 (the plain mean) 2.338 (+11.1%); the first piece alone +21.4%, the mean of all base rows
    +68.7%. With the head untied (a copy of the embeddings, so the same model at step 0) the input side is what
    matters: weighted input rows with mean head rows +7.4%, mean input rows with weighted head rows +10.9%, both
    weighted +5.8% (input decay 0.5 with head decay 0.3: +5.6%), so one decay serves both tables.
    """
    w = torch.tensor([decay**k for k in range(n)], dtype=torch.float32)
    return w / w.sum()


def subtoken_row(base: torch.Tensor, ids: Sequence[int], decay: float = 1.0) -> torch.Tensor:
    """The position-weighted mean of ``base[ids]`` (float32; see :func:`piece_weights`)."""
    rows = base[list(ids)].float()
    return (piece_weights(len(ids), decay)[:, None] * rows).sum(dim=0)


def _init_rows(
    weight: torch.Tensor, report: ResizeReport, pieces: dict[int, list[int]] | None, generator: torch.Generator,
    std: float,
) -> None:
    """Overwrite rows ``[first_new_id, embedding_rows)`` of one table in place (see the module docstring)."""
    # Rows past first_new_id in the old table are spare padding (never trained), so they stay out of the mean.
    base = weight[: report.first_new_id].float()
    mean = base.mean(dim=0)
    new_ids = report.new_token_ids
    rows = weight.data
    if report.init == "random":
        noise = torch.normal(0.0, std, size=(report.embedding_rows - report.first_new_id, weight.shape[1]),
                             generator=generator)
        rows[report.first_new_id:] = noise.to(rows.dtype)
        return
    decay = SUBTOKEN_DECAY.get(report.init, 1.0)
    for i in new_ids:
        ids = pieces.get(i) if pieces is not None else None
        rows[i] = (subtoken_row(base, ids, decay) if ids else mean).to(rows.dtype)
    rows[report.tokenizer_size:] = mean.to(rows.dtype)


def embedding_module_names(model) -> tuple[str, str | None]:
    """Qualified names of the input embedding and output head modules (``model.embed_tokens``, ``lm_head``)."""
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    names = {id(m): n for n, m in model.named_modules()}
    return names[id(inp)], (names.get(id(out)) if out is not None else None)


def is_tied(model) -> bool:
    """Whether the output head shares its weight tensor with the input embeddings."""
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


def resize_and_init(
    model,
    size: int,
    *,
    init: str,
    pad_to_multiple_of: int = 64,
    tokenizer=None,
    base_tokenizer=None,
    first_new_id: int | None = None,
) -> ResizeReport:
    """Grow the model's embedding table (and untied head) to ``size`` rows padded, and initialise new rows.

    ``size``: the number of token ids the table must hold (``len(tokenizer)``). ``first_new_id``: first id that
    counts as new (default: the old table size, or ``size`` when the table was already big enough). Rows from there
    up are (re)initialised, so a base model shipped with spare padding rows (e.g. Qwen) gets proper rows for new
    tokens that land in them. The ``subtoken_*`` inits need the new ``tokenizer`` (to read the new tokens) and the
    ``base_tokenizer`` (to split them); the other inits need neither. The caller checks that a smaller tokenizer is
    acceptable (see :func:`langadapt.loading.check_vocab_fit`); this function never shrinks the table.
    """
    if not isinstance(size, int) or size < 1:
        raise TypeError(f"resize_and_init takes the number of token ids (an int >= 1), got {size!r}")
    inp = model.get_input_embeddings()
    out = model.get_output_embeddings()
    with gathered([inp.weight], modify=False):
        base_rows = int(inp.weight.shape[0])
    tied = out is not None and out.weight is inp.weight
    rows = padded_size(size, pad_to_multiple_of) if size > base_rows else base_rows
    if first_new_id is None:
        first_new_id = min(base_rows, size)
    first_new_id = min(first_new_id, size)
    report = ResizeReport(
        base_rows=base_rows, tokenizer_size=size, embedding_rows=rows, first_new_id=first_new_id, init=init,
        tied=tied, padding_rows=rows - size,
    )
    if rows > base_rows:
        # mean_resizing=True is the hf_default init; otherwise we overwrite every added row below, and skipping
        # transformers' covariance sampling saves a (hidden x hidden) Cholesky per table.
        model.resize_token_embeddings(rows, mean_resizing=(init == "hf_default"))
        inp = model.get_input_embeddings()
        out = model.get_output_embeddings()
        if tied and out is not None and out.weight is not inp.weight:
            raise RuntimeError("resize_token_embeddings untied the input and output embeddings")
    if init == "hf_default" or first_new_id >= rows:
        return report
    # A table that did not grow and has no new token rows is untouched, spare padding rows included: they are the
    # model's own (trained, or a merged model's padding), and there is no new token to initialise (so no base
    # tokenizer is needed either; prepare_model loads one only when some token is new).
    if rows == base_rows and first_new_id >= size:
        return report
    pieces = None
    if init in SUBTOKEN_DECAY:
        if base_tokenizer is None or tokenizer is None:
            raise ValueError(f"embedding_init {init} needs the new and the base tokenizer")
        pieces = subtoken_pieces(report.new_token_ids, tokenizer, base_tokenizer, max_base_id=first_new_id)
        report.subtoken_fallbacks = [tokenizer.convert_ids_to_tokens(i) for i, p in pieces.items() if not p]
        report.examples = [
            {"token": tokenizer.convert_ids_to_tokens(i), "pieces": base_tokenizer.convert_ids_to_tokens(p)}
            for i, p in list(pieces.items())[:5]
        ]
    std = float(getattr(model.config, "initializer_range", 0.02))
    tables = [inp.weight] + ([out.weight] if out is not None and not tied else [])
    with gathered(tables, modify=True), torch.no_grad():
        for w in tables:
            _init_rows(w, report, pieces, torch.Generator().manual_seed(RANDOM_INIT_SEED), std)
    if report.subtoken_fallbacks:
        logger.warning("%d new tokens had no base pieces and start at the mean row, e.g. %s",
                       len(report.subtoken_fallbacks), report.subtoken_fallbacks[:5])
    return report

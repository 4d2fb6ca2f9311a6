"""A separate learning rate for the embedding table and output head (``--embedding_learning_rate``).

Why: when the vocabulary grows, the new rows start far from where training takes them, while the transformer (or its
LoRA adapter) only needs small changes; one learning rate is either too small for the rows or too large for the rest.
Unsloth exposes ``embedding_learning_rate`` for this, and adaptation guides report that training the embeddings at
their own (usually lower, 2-10x) rate protects English while the new rows learn.

:class:`EmbeddingLRTrainer` is the HF ``Trainer`` with one change: after the usual optimizer is built (decay and
no-decay groups), every trainable parameter of the input embeddings and the output head moves into groups of its
own with ``lr = embedding_learning_rate`` (decay setting kept). The learning-rate scheduler is built afterwards on the
same groups, so warmup and decay scale both rates alike. Which parameters count, per ``--training_mode``:

* ``full``: the embedding matrix and the head (one tensor when tied).
* ``lora``: the trained copies of ``embed_tokens``/``lm_head`` (PEFT's ``modules_to_save``), not the LoRA matrices.
* ``new_rows``: PEFT's trainable-token deltas, i.e. only the new tokens' rows: there the flag is a new-rows rate.
* ``embeddings``: everything trained is embeddings, so the flag simply replaces ``--learning_rate``.

``None`` (the default) leaves the optimizer exactly as the HF Trainer builds it.
"""

from __future__ import annotations

import logging

import torch
from transformers import Trainer

logger = logging.getLogger(__name__)


def embedding_parameters(model) -> list[torch.nn.Parameter]:
    """Trainable parameters of the input embeddings and the output head (whatever PEFT wrapped them in)."""
    modules = [model.get_input_embeddings()]
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if out is not None:
        modules.append(out)
    seen: dict[int, torch.nn.Parameter] = {}
    for module in modules:
        for p in module.parameters():
            if p.requires_grad:
                seen.setdefault(id(p), p)
    return list(seen.values())


def split_embedding_groups(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], lr: float) -> int:
    """Move ``params`` out of ``optimizer``'s groups into copies of those groups with ``lr``; returns how many moved.

    Only valid before the first step (no optimizer state yet), which is when the Trainer calls it.
    """
    ids = {id(p) for p in params}
    groups, moved = [], 0
    for group in optimizer.param_groups:
        rest = [p for p in group["params"] if id(p) not in ids]
        emb = [p for p in group["params"] if id(p) in ids]
        if rest:
            groups.append({**group, "params": rest})
        if emb:
            groups.append({**group, "params": emb, "lr": lr, "initial_lr": lr, "embedding_group": True})
            moved += len(emb)
    optimizer.param_groups = groups
    return moved


class EmbeddingLRTrainer(Trainer):
    """``transformers.Trainer`` whose optimizer gives the embeddings and head their own learning rate."""

    def __init__(self, *args, embedding_learning_rate: float | None = None, **kwargs):
        self.embedding_learning_rate = embedding_learning_rate
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model=None):
        had_optimizer = self.optimizer is not None
        optimizer = super().create_optimizer(model)
        if self.embedding_learning_rate is None or had_optimizer:
            return optimizer
        params = embedding_parameters(self.model if model is None else model)
        # DeepSpeed/accelerate may wrap the optimizer; the groups live on the inner torch optimizer.
        inner = getattr(optimizer, "optimizer", optimizer)
        moved = split_embedding_groups(inner, params, self.embedding_learning_rate)
        n = sum(p.numel() for p in params)
        logger.info("embedding learning rate %g for %d tensors (%d parameters); %g for the rest",
                    self.embedding_learning_rate, moved, n, self.args.learning_rate)
        if moved == 0:
            logger.warning("--embedding_learning_rate is set but no trainable embedding or head parameter was found")
        return optimizer

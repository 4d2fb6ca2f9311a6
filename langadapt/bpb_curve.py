"""Held-out bits per byte during training: the curves the adaptation study draws (``--bpb_eval_files``).

A :class:`HeldoutBPBCallback` scores each held-out file with :func:`langadapt.perplexity.corpus_perplexity` before
the first step, every K optimizer steps and at the end, and appends the records to ``bpb_curve.jsonl``
(:data:`langadapt.bpb.CURVE_FILE`; read back with :func:`langadapt.bpb.read_curve`).
"""

from __future__ import annotations

from langadapt.bpb import CURVE_FILE, read_documents
from langadapt.errors import InputError


def _callback_base():
    from transformers import TrainerCallback

    return TrainerCallback


class HeldoutBPBCallback(_callback_base()):
    """Held-out bits per byte of each file before the first step, every ``every`` optimizer steps and at the end,
    appended to ``output_file`` as ``{"step", "tokens_seen", "file", "bpb", "tokens", "bytes", "wall_s"}``.

    ``tokens_seen`` = step x ``tokens_per_step``; ``wall_s`` counts training time only (evaluations excluded), so a
    curve against wall time shows what training cost. The main process scores (the model is small next to a
    training step's memory); under DeepSpeed ZeRO-3 the weights are sharded and the callback does nothing.
    """

    def __init__(self, tokenizer, files: dict[str, list[str]], output_file: str, every: int, tokens_per_step: int,
                 normalizer=None, block_size: int = 512):
        import time

        self.tokenizer, self.files, self.output_file = tokenizer, files, output_file
        self.every, self.tokens_per_step, self.normalizer, self.block_size = every, tokens_per_step, normalizer, \
            block_size
        self._clock = time.monotonic
        self._start = self._clock()
        self._eval_seconds = 0.0
        self._done: set[int] = set()

    def _score(self, model, step: int) -> None:
        import json
        import os

        from transformers.integrations import is_deepspeed_zero3_enabled

        from langadapt.perplexity import corpus_perplexity

        if step in self._done or is_deepspeed_zero3_enabled():
            return
        self._done.add(step)
        t = self._clock()
        wall = t - self._start - self._eval_seconds
        records = []
        for stem, docs in self.files.items():
            r = corpus_perplexity(model, self.tokenizer, docs, block_size=self.block_size, normalizer=self.normalizer)
            records.append({"step": step, "tokens_seen": step * self.tokens_per_step, "file": stem, "bpb": r.bpb,
                            "tokens": r.tokens, "bytes": r.bytes, "wall_s": round(wall, 2)})
        os.makedirs(os.path.dirname(os.path.abspath(self.output_file)), exist_ok=True)
        with open(self.output_file, "a", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps(rec) + "\n")
        self._eval_seconds += self._clock() - t

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._start = self._clock()
        if model is not None and state.is_world_process_zero and state.global_step == 0:
            self._score(model, 0)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if (model is not None and state.is_world_process_zero and self.every
                and state.global_step % self.every == 0):
            self._score(model, state.global_step)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if model is not None and state.is_world_process_zero:
            self._score(model, state.global_step)


def make_curve_callback(files: str, max_words: int, every: int, tokenizer, output_dir: str, tokens_per_step: int,
                        normalizer=None, block_size: int = 512) -> HeldoutBPBCallback:
    """The :class:`HeldoutBPBCallback` for ``--bpb_eval_files`` (comma-separated), writing
    ``<output_dir>/bpb_curve.jsonl``; a missing or empty file raises :class:`~langadapt.errors.InputError`."""
    import os

    docs: dict[str, list[str]] = {}
    for path in [f.strip() for f in files.split(",") if f.strip()]:
        if not os.path.isfile(path):
            raise InputError(f"{path} does not exist", arg="bpb_eval_files", value=path)
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in docs:
            raise InputError(f"two files named {stem}: results are keyed by file name", arg="bpb_eval_files",
                             value=files)
        docs[stem] = read_documents(path, max_words)
        if not docs[stem]:
            raise InputError(f"{path} holds no text", arg="bpb_eval_files", value=path)
    return HeldoutBPBCallback(tokenizer, docs, os.path.join(output_dir, CURVE_FILE), every, tokens_per_step,
                              normalizer=normalizer, block_size=block_size)

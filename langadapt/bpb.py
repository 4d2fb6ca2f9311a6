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

from langadapt.errors import InputError

LN2 = math.log(2.0)


def utf8_bytes(text: str) -> int:
    """Bytes of ``text`` in UTF-8 (the denominator of bits per byte)."""
    return len(text.encode("utf-8"))


def bits_per_byte(nll_nats: float, n_bytes: int) -> float:
    """``nll_nats / ln 2 / n_bytes``: bits the model needs per byte of text; ``nan`` for an empty text."""
    return nll_nats / LN2 / n_bytes if n_bytes > 0 else float("nan")



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

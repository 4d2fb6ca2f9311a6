"""Held-out perplexity per word and per character (comparable across tokenizers) of a model + optional adapters.

    python inference/perplexity.py --model_name_or_path BASE [--adapters A1,A2] [--tokenizer_name_or_path TOK] \
        --eval_files heldout/fa.jsonl,heldout/en.jsonl --output_dir OUT

writes ``OUT/perplexity.json`` ({"files": {stem: {nll, tokens, words, chars, ppl_word, ppl_char, ppl_token}}, ...}).
A tokenizer larger than the model's embedding table (a merged tokenizer on the base model, before any training) grows
the table and initialises the new rows with ``--embedding_init``, exactly as the training stages do: that is the
"before pretraining" point of the vocabulary-extension comparison. How the numbers are defined:
langadapt/perplexity.py.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from langadapt.args import EMBEDDING_INITS, TORCH_DTYPES
from langadapt.cli import UsageError, parse_args, run_main
from langadapt.io import atomic_output_dir, iter_corpus, resolve_files, write_json
from langadapt.normalize import NormalizerConfig
from langadapt.perplexity import corpus_perplexity
from langadapt.runinfo import write_run_args

logger = logging.getLogger("langadapt.perplexity")


@dataclass
class PerplexityArguments:
    """Model, held-out text and output of a perplexity measurement."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "Base model folder. Required."})
    eval_files: str | None = field(
        default=None,
        metadata={"help": "Comma-separated held-out .txt (a line = a document) / .jsonl ({'text'}) files or folders; "
                          "results are keyed by file stem. Required."},
    )
    output_dir: str | None = field(default=None, metadata={"help": "Folder for perplexity.json. Required."})
    adapters: str | None = field(
        default=None, metadata={"help": "Comma-separated PEFT adapter folders applied (and merged) in order."}
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer folder. Default: the last adapter's, else the base model's."}
    )
    embedding_init: str = field(
        default="subtoken_weighted",
        metadata={"help": "Init of new embedding rows when the tokenizer outgrows the model (see the training "
                          "stages' --embedding_init).", "choices": list(EMBEDDING_INITS)},
    )
    block_size: int | None = field(
        default=None, metadata={"help": "Tokens per scoring window. Default: min(1024, the model's context)."}
    )
    batch_tokens: int = field(
        default=2048, metadata={"help": "Padded tokens per forward pass (logits memory ~ this x vocabulary x 4 bytes)."}
    )
    max_documents: int | None = field(default=None, metadata={"help": "Score only the first N documents of each file."})
    max_words: int | None = field(
        default=None,
        metadata={"help": "Score the first documents of each file up to about N words (keeps CPU runs short)."},
    )
    torch_dtype: str | None = field(
        default=None, metadata={"help": "Load dtype (default float32).", "choices": list(TORCH_DTYPES)}
    )
    name: str | None = field(default=None, metadata={"help": "Label stored in perplexity.json (e.g. 'pretrain')."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace an existing --output_dir."})

    def __post_init__(self) -> None:
        for flag in ("model_name_or_path", "eval_files", "output_dir"):
            if not getattr(self, flag):
                raise ValueError(f"--{flag} is required")
        if self.embedding_init not in EMBEDDING_INITS:
            raise ValueError(f"--embedding_init must be one of {', '.join(EMBEDDING_INITS)}")
        for flag in ("block_size", "batch_tokens", "max_documents", "max_words"):
            value = getattr(self, flag)
            if value is not None and value < 1:
                raise ValueError(f"--{flag} must be >= 1, got {value}")

    @property
    def adapter_list(self) -> list[str]:
        return [a.strip() for a in (self.adapters or "").split(",") if a.strip()]


def load_model(args: PerplexityArguments):
    """(model, tokenizer, tokenizer path, resize report or None) for the arguments."""
    from langadapt.adapters import load_base, load_tokenizer_for, load_with_adapters, resolve_adapter_chain
    from langadapt.embeddings import resize_and_init
    from langadapt.modeling import tokenizer_info

    chain = resolve_adapter_chain(args.adapter_list) if args.adapter_list else []
    tokenizer, tok_path = load_tokenizer_for(args.model_name_or_path, chain, args.tokenizer_name_or_path)
    if chain:
        model, tokenizer = load_with_adapters(args.model_name_or_path, chain, tok_path, args.torch_dtype)
        return model, tokenizer, tok_path, None
    model = load_base(args.model_name_or_path, args.torch_dtype, flag="--model_name_or_path")
    report = None
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        from transformers import AutoTokenizer

        info = tokenizer_info(tok_path) or {}
        base_tok = AutoTokenizer.from_pretrained(info.get("base_tokenizer") or args.model_name_or_path)
        first_new = (info.get("new_token_ids") or [None])[0]
        report = resize_and_init(model, tokenizer, init=args.embedding_init, pad_to_multiple_of=1,
                                 base_tokenizer=base_tok, first_new_id=first_new)
        logger.info("grew the embedding table %d -> %d rows (%s init)", report.base_rows, report.embedding_rows,
                    args.embedding_init)
    model.eval()
    return model, tokenizer, tok_path, report


def read_documents(path: str, max_documents: int | None, max_words: int | None) -> list[str]:
    """The first documents of a held-out file, within the document and word limits."""
    docs, words = [], 0
    for doc in iter_corpus([path]):
        if (max_documents and len(docs) >= max_documents) or (max_words and words >= max_words):
            break
        docs.append(doc)
        words += len(doc.split())
    return docs


def main(argv=None) -> dict:
    (args,) = parse_args((PerplexityArguments,), argv, description=__doc__)

    # Phase 1: inputs (checked before the model is loaded, so a bad path fails fast).
    files = resolve_files(args.eval_files.split(","), "--eval_files")
    stems = [os.path.splitext(os.path.basename(f))[0] for f in files]
    if len(set(stems)) != len(stems):
        raise UsageError(f"--eval_files: file names must differ (results are keyed by stem): {stems}")

    with atomic_output_dir(args.output_dir, args.overwrite_output_dir, "--output_dir") as tmp:
        # Phase 2: model (+ adapters, or grown table for a larger tokenizer).
        model, tokenizer, tok_path, resize = load_model(args)
        normalizer = NormalizerConfig.from_dir(tok_path)
        context = getattr(model.config, "max_position_embeddings", None) or 1024
        block_size = min(args.block_size or 1024, context)

        # Phase 3: score each file.
        results = {}
        for path, stem in zip(files, stems):
            docs = read_documents(path, args.max_documents, args.max_words)
            logger.info("%s: scoring %d documents", path, len(docs))
            results[stem] = {"file": path, **corpus_perplexity(
                model, tokenizer, docs, block_size, args.batch_tokens, normalizer).to_dict()}

        # Phase 4: outputs.
        payload = {
            "name": args.name, "model_name_or_path": args.model_name_or_path, "adapters": args.adapter_list,
            "tokenizer": tok_path, "tokenizer_size": len(tokenizer), "block_size": block_size,
            "embedding_init": args.embedding_init if resize else None, "files": results,
        }
        write_json(os.path.join(tmp, "perplexity.json"), payload)
        write_run_args(tmp, {"perplexity": args}, {"resize": resize.to_dict() if resize else None})
    for stem, r in results.items():
        logger.info("%s: ppl/word %.2f  ppl/char %.3f  tokens/word %.2f", stem, r["ppl_word"], r["ppl_char"],
                    r["tokens_per_word"])
    return payload


if __name__ == "__main__":
    run_main(main)

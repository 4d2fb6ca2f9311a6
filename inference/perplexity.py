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

from langadapt.args.inference import PerplexityArguments
from langadapt.cli import UsageError, parse_args, run_main
from langadapt.io import atomic_output_dir, iter_corpus, resolve_files, write_json
from langadapt.normalize import NormalizerConfig
from langadapt.perplexity import corpus_perplexity
from langadapt.runinfo import write_run_args

logger = logging.getLogger("langadapt.perplexity")


def load_model(args: PerplexityArguments):
    """(model, tokenizer, tokenizer path, resize report or None) for the arguments."""
    from langadapt.loading import (
        embedding_rows, grow_to_tokenizer, load_base_model, load_tokenizer, load_with_adapters, resolve_adapter_chain,
        tokenizer_path_for,
    )

    chain = resolve_adapter_chain(args.adapter_list) if args.adapter_list else []
    tok_path = tokenizer_path_for(args.model_name_or_path, chain, args.tokenizer_name_or_path)
    if chain:
        model, tokenizer = load_with_adapters(args.model_name_or_path, chain, tok_path, args.torch_dtype)
        return model, tokenizer, tok_path, None
    tokenizer = load_tokenizer(tok_path)
    model = load_base_model(args.model_name_or_path, dtype=args.torch_dtype)
    report = None
    if len(tokenizer) > embedding_rows(model):
        # The same growth as the training stages' (langadapt.loading.grow_to_tokenizer), without padding rows: a
        # padded row would still take softmax mass and change the scores.
        report = grow_to_tokenizer(model, tokenizer, tokenizer_dir=tok_path, model_dir=args.model_name_or_path,
                                   init=args.embedding_init, pad_to_multiple_of=1)
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
    files = resolve_files(args.eval_files.split(","), "eval_files")
    stems = [os.path.splitext(os.path.basename(f))[0] for f in files]
    if len(set(stems)) != len(stems):
        raise UsageError(f"--eval_files: file names must differ (results are keyed by stem): {stems}")
    documents = {path: read_documents(path, args.max_documents, args.max_words) for path in files}
    for path, docs in documents.items():
        if not docs:  # perplexity of no text is 0/0: NaN in the output, exit 0, and a report that reads it
            raise UsageError(f"--eval_files: {path} holds no text (only blank lines or empty 'text' fields); "
                             "give a file with at least one document")

    with atomic_output_dir(args.output_dir, args.overwrite_output_dir, "output_dir",
                           "overwrite_output_dir") as tmp:
        # Phase 2: model (+ adapters, or grown table for a larger tokenizer).
        model, tokenizer, tok_path, resize = load_model(args)
        normalizer = NormalizerConfig.from_dir(tok_path)
        context = getattr(model.config, "max_position_embeddings", None) or 1024
        block_size = min(args.block_size or 1024, context)

        # Phase 3: score each file.
        results = {}
        for path, stem in zip(files, stems):
            docs = documents[path]
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

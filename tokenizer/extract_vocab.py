"""Train the add-on vocabulary on target-language text (step 1 of vocabulary extension).

    python tokenizer/extract_vocab.py --train_file data/fa/ --vocab_size 20000 \
        --base_tokenizer path/to/base_model --output_dir outputs/extra_vocab

With --base_tokenizer the add-on copies the base's SentencePiece trainer and normalizer settings (tokenizer.model
bases) or its normalizer and pre-tokenizer (byte-level BPE tokenizer.json bases), so its pieces can be formed
inside the base. Writes extra.model (+ extra.vocab) or extra_tokenizer.json, langadapt_normalizer.json and
extract_report.json. Merge it with tokenizer/merge.py.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from langadapt.args.tokenizer import ExtractArguments
from langadapt.cli import parse_args, run_main
from langadapt.io import atomic_output_dir, write_json
from langadapt.normalize import NormalizerConfig
from langadapt.preflight import check_corpus_script
from langadapt.vocab import corpus_stats, extract_vocab, read_corpus, resolve_train_files, sample_lines

logger = logging.getLogger("langadapt.extract_vocab")


def main(argv: Sequence[str] | None = None) -> dict:
    (args,) = parse_args((ExtractArguments,), argv, description=__doc__)
    logger.info("arguments: %s", args)

    # 1. Read and normalize the corpus (bad files stop here, before any output exists).
    normalizer = NormalizerConfig.for_language(args.language) if args.normalize else NormalizerConfig.disabled()
    files = resolve_train_files(args.train_file)
    lines = read_corpus(files, normalizer, args.text_field)
    stats = corpus_stats(lines)
    stats.update(check_corpus_script(lines, args.language, files))  # English-only or binary input: stop here
    lines = sample_lines(lines, args.input_sentence_size, args.shuffle_input_sentence, args.seed)
    logger.info("corpus: %d files, %d lines, %d chars; training on %d lines", len(files), stats["lines"],
                stats["chars"], len(lines))

    # 2. Train the add-on inside a temporary folder that becomes --output_dir only on success.
    with atomic_output_dir(args.output_dir, args.overwrite) as tmp:
        result = extract_vocab(lines, tmp, args.vocab_size, args.base_tokenizer, args.model_type,
                               args.num_threads, args.seed, args.min_frequency)
        normalizer.save(tmp)
        report = {
            "kind": result.kind, "model_file": result.model_file, "vocab_size": result.vocab_size,
            "train_files": files, "corpus_lines": stats["lines"], "corpus_chars": stats["chars"],
            "corpus_bytes": stats["bytes"], "trained_on_lines": len(lines), "seconds": round(result.seconds, 3),
            "base_tokenizer": args.base_tokenizer, "settings": result.settings,
        }
        write_json(os.path.join(tmp, "extract_report.json"), report)
    logger.info("add-on %s (%s, %d entries) written to %s in %.1f s", result.model_file, result.kind,
                result.vocab_size, args.output_dir, result.seconds)
    return report


if __name__ == "__main__":
    run_main(main)

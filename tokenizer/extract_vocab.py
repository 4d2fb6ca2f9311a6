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
from dataclasses import dataclass, field

from langadapt.cli import COMMA_SPLIT_LIST, parse_args, run_main
from langadapt.io import atomic_output_dir, write_json
from langadapt.normalize import NormalizerConfig
from langadapt.preflight import check_corpus_script
from langadapt.vocab import corpus_stats, extract_vocab, read_corpus, resolve_train_files, sample_lines

logger = logging.getLogger("langadapt.extract_vocab")


@dataclass
class ExtractArguments:
    """What to train the add-on vocabulary on, and how."""

    train_file: list[str] = field(metadata={"help": "Training text: files or folders of .txt (a line is a document) "
                                            "or .jsonl (a 'text' field per line); comma-separated or repeated.", **COMMA_SPLIT_LIST})
    vocab_size: int = field(metadata={"help": "Size of the add-on vocabulary (SentencePiece: all its pieces incl. "
                                      "bytes/specials; byte-level BPE: incl. the 256 byte symbols)."})
    output_dir: str = field(metadata={"help": "Folder to write the add-on model and extract_report.json into."})
    base_tokenizer: str | None = field(default=None, metadata={
        "help": "The base model's tokenizer folder (recommended): its trainer/normalizer settings are copied. "
                "Without it the add-on uses Llama-2's SentencePiece settings."})
    model_type: str | None = field(default=None, metadata={
        "help": "bpe or unigram (SentencePiece only); default: the base's type (bpe without a base)."})
    input_sentence_size: int = field(default=0, metadata={
        "help": "Train on at most this many lines (0 = all); sampled with --seed when --shuffle_input_sentence."})
    shuffle_input_sentence: bool = field(default=True, metadata={"help": "Sample lines at random, not the first N."})
    num_threads: int = field(default=0, metadata={"help": "SentencePiece trainer threads; 0 = all CPU cores."})
    language: str = field(default="fa", metadata={"help": "Language code; picks the default normalizer."})
    normalize: bool = field(default=True, metadata={
        "help": "Normalize the text first (the Persian normalizer for --language fa); saved for later stages."})
    text_field: str = field(default="text", metadata={"help": "Field holding the text in .jsonl files."})
    min_frequency: int = field(default=2, metadata={"help": "Byte-level BPE: a merge's pair must occur this often."})
    seed: int = field(default=42, metadata={"help": "Seed for sampling lines and for the trainer."})
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty --output_dir.",
                                                     "aliases": ["--overwrite_output_dir"]})

    def __post_init__(self) -> None:
        if self.vocab_size <= 0:
            raise ValueError(f"--vocab_size must be positive, got {self.vocab_size}")
        if self.model_type not in (None, "bpe", "unigram"):
            raise ValueError(f"--model_type must be bpe or unigram, got {self.model_type!r}")
        if self.input_sentence_size < 0 or self.num_threads < 0 or self.min_frequency < 0:
            raise ValueError("--input_sentence_size, --num_threads and --min_frequency must be >= 0")
        self.num_threads = self.num_threads or os.cpu_count() or 1


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
